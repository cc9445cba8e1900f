#pragma once

// StatusSource over the daemon's HTTP API client (common/apiclient.h).

#include "apiclient.h"
#include "statussource.h"

namespace slullama {

class ApiStatusSource final : public StatusSource
{
    Q_OBJECT
public:
    explicit ApiStatusSource(QObject *parent = nullptr);

    void setEndpoint(const QUrl &base, const QString &token) override;
    void fetchStatus() override;
    void wake() override;
    void wakeFor(double minutes) override;

private:
    ApiClient m_client;
};

} // namespace slullama
