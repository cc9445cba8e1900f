#include "apiclient.h"

#include "logging.h"

#include <QJsonDocument>
#include <QJsonObject>
#include <QNetworkProxy>
#include <QNetworkReply>
#include <QNetworkRequest>

namespace slullama {

ApiClient::ApiClient(const QUrl &base, const QString &token, QObject *parent)
    : QObject(parent)
    , m_base(base)
    , m_token(token)
{
    // The daemon is on loopback or behind our own tunnel: an http_proxy from the environment
    // must not reroute it.
    m_network.setProxy(QNetworkProxy::NoProxy);
}

void ApiClient::setEndpoint(const QUrl &base, const QString &token)
{
    m_base = base;
    m_token = token;
}

QNetworkRequest ApiClient::request(const QString &path) const
{
    QUrl url = m_base;
    QString basePath = url.path();
    if (basePath.endsWith(u'/'))
        basePath.chop(1);
    url.setPath(basePath + path);
    QNetworkRequest request(url);
    request.setTransferTimeout(m_timeoutMs);
    request.setAttribute(QNetworkRequest::RedirectPolicyAttribute,
                         QNetworkRequest::ManualRedirectPolicy);
    request.setHeader(QNetworkRequest::UserAgentHeader,
                      QString(QStringLiteral("slullama/") + QStringLiteral(SLULLAMA_VERSION)));
    if (!m_token.isEmpty())
        request.setRawHeader("Authorization", "Bearer " + m_token.toUtf8());
    return request;
}

void ApiClient::fetchStatus()
{
    QNetworkReply *reply = m_network.get(request(QStringLiteral("/slullama/status")));
    connect(reply, &QNetworkReply::finished, this,
            [this, reply] { handleReply(reply, Operation::Status); });
}

void ApiClient::wake(double keepAwakeMinutes)
{
    QNetworkRequest req = request(QStringLiteral("/slullama/wake"));
    req.setHeader(QNetworkRequest::ContentTypeHeader, QStringLiteral("application/json"));
    QByteArray body;
    if (keepAwakeMinutes > 0)
        body = QJsonDocument(QJsonObject {{QStringLiteral("keep_awake_minutes"), keepAwakeMinutes}})
                   .toJson(QJsonDocument::Compact);
    QNetworkReply *reply = m_network.post(req, body);
    connect(reply, &QNetworkReply::finished, this,
            [this, reply] { handleReply(reply, Operation::Wake); });
}

QString ApiClient::describeFailure(QNetworkReply *reply, int httpStatus,
                                   const QByteArray &body) const
{
    const QString url = m_base.toString(QUrl::RemoveUserInfo);
    if (httpStatus == 401)
        return QStringLiteral("token rejected by the slullama daemon at ") + url
               + QStringLiteral(": check --token, SLULLAMA_TOKEN or the token in config.toml");
    if (httpStatus != 0) {
        QString detail;
        const QJsonObject object = QJsonDocument::fromJson(body).object();
        const QJsonValue error = object.value(QLatin1String("error"));
        if (error.isString())
            detail = error.toString();
        else if (error.isObject())
            detail = error.toObject().value(QLatin1String("message")).toString();
        QString message = QStringLiteral("the daemon at ") + url + QStringLiteral(" answered HTTP ")
                          + QString::number(httpStatus);
        if (httpStatus == 404)
            message += QStringLiteral(" (is it a slullama daemon, not Ollama itself?)");
        if (!detail.isEmpty())
            message += QStringLiteral(": ") + detail;
        return message;
    }
    switch (reply->error()) {
    case QNetworkReply::ConnectionRefusedError:
        return QStringLiteral("no slullama daemon at ") + url
               + QStringLiteral(" (connection refused): is it running, and on this port?");
    case QNetworkReply::HostNotFoundError:
        return QStringLiteral("host not found: ") + m_base.host();
    case QNetworkReply::OperationCanceledError:
    case QNetworkReply::TimeoutError:
        return QStringLiteral("no answer from ") + url + QStringLiteral(" within ")
               + QString::number(m_timeoutMs / 1000.0) + QStringLiteral(" s");
    case QNetworkReply::RemoteHostClosedError:
        return QStringLiteral("the connection to ") + url
               + QStringLiteral(" closed before an answer: is it a slullama daemon?");
    default:
        return QStringLiteral("cannot reach ") + url + QStringLiteral(": ")
               + reply->errorString();
    }
}

void ApiClient::handleReply(QNetworkReply *reply, Operation operation)
{
    reply->deleteLater();
    const int httpStatus = reply->attribute(QNetworkRequest::HttpStatusCodeAttribute).toInt();
    // An aborted (timed out) reply is closed; reading it would only warn.
    const QByteArray body = reply->isOpen() ? reply->readAll() : QByteArray();
    const auto fail = [&](const QString &message, int code) {
        qCDebug(lcClient) << "request failed:" << message;
        if (operation == Operation::Status)
            emit statusFailed(message, code);
        else
            emit wakeFailed(message, code);
    };

    const bool success = operation == Operation::Status ? httpStatus == 200
                                                        : (httpStatus == 200 || httpStatus == 202);
    if (!success) {
        fail(describeFailure(reply, httpStatus, body), httpStatus);
        return;
    }
    auto status = Status::fromJson(body);
    if (!status) {
        fail(QStringLiteral("unexpected answer from ") + m_base.toString(QUrl::RemoveUserInfo)
                 + QStringLiteral(": ") + status.error(),
             0);
        return;
    }
    if (operation == Operation::Status)
        emit statusReceived(*status, body);
    else
        emit wakeAccepted(*status, body);
}

} // namespace slullama
