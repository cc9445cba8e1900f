#pragma once

// Turns POSIX signals into a Qt signal: the handler only writes the signal number to a
// socketpair (async-signal-safe); a QSocketNotifier reads it on the event loop.

#include <QObject>

#include <initializer_list>

QT_BEGIN_NAMESPACE
class QSocketNotifier;
QT_END_NAMESPACE

namespace slullama {

class UnixSignals final : public QObject
{
    Q_OBJECT

public:
    explicit UnixSignals(QObject *parent = nullptr);
    ~UnixSignals() override;

    // Routes `signals` to received(). Returns false (and routes nothing) if the pipe or a handler
    // cannot be set up. Only one UnixSignals may be installed at a time.
    bool install(std::initializer_list<int> signalNumbers);

signals:
    void received(int signalNumber);

private:
    void onReadable();

    int m_fds[2] = {-1, -1};
    QSocketNotifier *m_notifier = nullptr;
    QList<int> m_installed;
};

} // namespace slullama
