#include "metrics.h"

#include <cmath>

namespace slullama {

namespace {

const char *typeName(Metrics::Type type)
{
    switch (type) {
    case Metrics::Type::Counter:
        return "counter";
    case Metrics::Type::Gauge:
        return "gauge";
    case Metrics::Type::Histogram:
        return "histogram";
    }
    return "untyped";
}

// A label set with one more label appended (histogram buckets' "le").
QByteArray withLabel(const QByteArray &labels, const QByteArray &name, const QByteArray &value)
{
    QByteArray extra = name + "=\"" + value + '"';
    return labels.isEmpty() ? extra : labels + ',' + extra;
}

QByteArray braces(const QByteArray &labels)
{
    return labels.isEmpty() ? QByteArray() : '{' + labels + '}';
}

} // namespace

QByteArray Metrics::escapeLabelValue(QByteArrayView value)
{
    QByteArray out;
    out.reserve(value.size());
    for (const char c : value) {
        if (c == '\\')
            out += "\\\\";
        else if (c == '"')
            out += "\\\"";
        else if (c == '\n')
            out += "\\n";
        else
            out += c;
    }
    return out;
}

QByteArray Metrics::formatValue(double value)
{
    if (std::isnan(value))
        return "NaN";
    if (std::isinf(value))
        return value > 0 ? "+Inf" : "-Inf";
    if (value == std::floor(value) && std::fabs(value) < 1e15)
        return QByteArray::number(qint64(value));
    return QByteArray::number(value, 'g', 12);
}

QByteArray Metrics::labelText(const MetricLabels &labels)
{
    QByteArray out;
    for (const auto &[name, value] : labels) {
        if (!out.isEmpty())
            out += ',';
        out += name + "=\"" + escapeLabelValue(value) + '"';
    }
    return out;
}

Metrics::Family *Metrics::family(const QByteArray &name)
{
    const auto it = m_families.find(name);
    return it == m_families.end() ? nullptr : &it->second;
}

void Metrics::declare(const QByteArray &name, Type type, const QByteArray &help,
                      std::vector<double> buckets)
{
    Family &f = m_families[name];
    f.type = type;
    f.help = help;
    f.buckets = std::move(buckets);
}

void Metrics::add(const QByteArray &name, const MetricLabels &labels, double by)
{
    if (Family *f = family(name))
        f->values[labelText(labels)] += by;
}

void Metrics::set(const QByteArray &name, const MetricLabels &labels, double value)
{
    if (Family *f = family(name))
        f->values[labelText(labels)] = value;
}

void Metrics::clear(const QByteArray &name)
{
    if (Family *f = family(name))
        f->values.clear();
}

void Metrics::observe(const QByteArray &name, const MetricLabels &labels, double value)
{
    Family *f = family(name);
    if (!f || f->type != Type::Histogram)
        return;
    Histogram &h = f->histograms[labelText(labels)];
    if (h.counts.empty())
        h.counts.assign(f->buckets.size(), 0);
    for (std::size_t i = 0; i < f->buckets.size(); ++i) {
        if (value <= f->buckets[i]) {
            ++h.counts[i];
            break;
        }
    }
    h.sum += value;
    ++h.count;
}

double Metrics::value(const QByteArray &name, const MetricLabels &labels) const
{
    const auto it = m_families.find(name);
    if (it == m_families.end())
        return 0;
    const Family &f = it->second;
    const QByteArray key = labelText(labels);
    if (f.type == Type::Histogram) {
        const auto h = f.histograms.find(key);
        return h == f.histograms.end() ? 0 : double(h->second.count);
    }
    const auto v = f.values.find(key);
    return v == f.values.end() ? 0 : v->second;
}

QByteArray Metrics::render() const
{
    QByteArray out;
    out.reserve(4096);
    for (const auto &[name, f] : m_families) {
        out += "# HELP " + name + ' ' + f.help + '\n';
        out += "# TYPE " + name + ' ' + typeName(f.type) + '\n';
        if (f.type != Type::Histogram) {
            for (const auto &[labels, value] : f.values)
                out += name + braces(labels) + ' ' + formatValue(value) + '\n';
            continue;
        }
        for (const auto &[labels, h] : f.histograms) {
            quint64 cumulative = 0;
            for (std::size_t i = 0; i < f.buckets.size(); ++i) {
                cumulative += h.counts[i];
                out += name + "_bucket" + braces(withLabel(labels, "le", formatValue(f.buckets[i])))
                    + ' ' + QByteArray::number(cumulative) + '\n';
            }
            out += name + "_bucket" + braces(withLabel(labels, "le", "+Inf")) + ' '
                + QByteArray::number(h.count) + '\n';
            out += name + "_sum" + braces(labels) + ' ' + formatValue(h.sum) + '\n';
            out += name + "_count" + braces(labels) + ' ' + QByteArray::number(h.count) + '\n';
        }
    }
    return out;
}

} // namespace slullama
