#pragma once

// A small metrics registry rendered in the Prometheus text exposition format 0.0.4: counters,
// gauges and histograms with labels. No client library: the daemon needs a dozen series, and
// the format is a few lines of text.

#include <QByteArray>
#include <QList>
#include <QPair>

#include <map>
#include <vector>

namespace slullama {

using MetricLabels = QList<QPair<QByteArray, QByteArray>>;

class Metrics final
{
public:
    enum class Type { Counter, Gauge, Histogram };

    // Declares a family (HELP and TYPE lines). Histograms need their upper bounds, ascending.
    void declare(const QByteArray &name, Type type, const QByteArray &help,
                 std::vector<double> buckets = {});

    void add(const QByteArray &name, const MetricLabels &labels = {}, double by = 1);
    void set(const QByteArray &name, const MetricLabels &labels, double value);
    void observe(const QByteArray &name, const MetricLabels &labels, double value);
    // Drops every series of a gauge family (before setting the current ones).
    void clear(const QByteArray &name);

    // The value of one counter/gauge series, or of a histogram's _count (tests, status).
    double value(const QByteArray &name, const MetricLabels &labels = {}) const;

    QByteArray render() const;

    static QByteArray escapeLabelValue(QByteArrayView value);
    static QByteArray formatValue(double value);

private:
    struct Histogram
    {
        std::vector<quint64> counts; // per bucket, not cumulative
        double sum = 0;
        quint64 count = 0;
    };
    struct Family
    {
        Type type = Type::Counter;
        QByteArray help;
        std::vector<double> buckets;
        std::map<QByteArray, double> values; // rendered label set -> value
        std::map<QByteArray, Histogram> histograms;
    };
    static QByteArray labelText(const MetricLabels &labels);
    Family *family(const QByteArray &name);

    std::map<QByteArray, Family> m_families;
};

} // namespace slullama
