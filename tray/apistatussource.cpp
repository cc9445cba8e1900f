#include "apistatussource.h"

namespace slullama {

ApiStatusSource::ApiStatusSource(QObject *parent)
    : StatusSource(parent)
    , m_client(QUrl(), QString())
{
    // Through a loopback tunnel a status answer is quick; a stuck one should not hold polling.
    m_client.setTimeout(10000);
    connect(&m_client, &ApiClient::statusReceived, this,
            [this](const Status &status, const QByteArray &) { emit statusReceived(status); });
    connect(&m_client, &ApiClient::statusFailed, this, &StatusSource::statusFailed);
    connect(&m_client, &ApiClient::wakeAccepted, this,
            [this](const Status &status, const QByteArray &) { emit wakeAccepted(status); });
    connect(&m_client, &ApiClient::wakeFailed, this, &StatusSource::wakeFailed);
}

void ApiStatusSource::setEndpoint(const QUrl &base, const QString &token)
{
    m_client.setEndpoint(base, token);
}

void ApiStatusSource::fetchStatus()
{
    m_client.fetchStatus();
}

void ApiStatusSource::wake()
{
    m_client.wake();
}

void ApiStatusSource::wakeFor(double minutes)
{
    m_client.wake(minutes);
}

} // namespace slullama
