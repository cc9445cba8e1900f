#include "logging.h"

Q_LOGGING_CATEGORY(lcConfig, "slullama.config", QtInfoMsg)
Q_LOGGING_CATEGORY(lcProxy, "slullama.proxy", QtInfoMsg)
Q_LOGGING_CATEGORY(lcHttp, "slullama.http", QtInfoMsg)
Q_LOGGING_CATEGORY(lcSlurm, "slullama.slurm", QtInfoMsg)
Q_LOGGING_CATEGORY(lcLifecycle, "slullama.lifecycle", QtInfoMsg)
Q_LOGGING_CATEGORY(lcNodeTunnel, "slullama.nodetunnel", QtInfoMsg)
Q_LOGGING_CATEGORY(lcTunnel, "slullama.tunnel", QtInfoMsg)
Q_LOGGING_CATEGORY(lcClient, "slullama.client", QtInfoMsg)
Q_LOGGING_CATEGORY(lcTray, "slullama.tray", QtInfoMsg)

namespace slullama {

void setupLogging(bool verbose)
{
    qSetMessagePattern(QStringLiteral(
        "%{time yyyy-MM-ddThh:mm:ss.zzz} %{if-debug}debug%{endif}%{if-info}info %{endif}"
        "%{if-warning}warn %{endif}%{if-critical}error%{endif}%{if-fatal}fatal%{endif} "
        "%{category}: %{message}"));
    if (verbose)
        QLoggingCategory::setFilterRules(QStringLiteral("slullama.*.debug=true"));
}

} // namespace slullama
