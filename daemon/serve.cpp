#include "serve.h"

#include <QTextStream>

namespace slullama {

// placeholder until the proxy owner wires ProxyServer + Lifecycle here
int runServe(const Config &)
{
    QTextStream(stderr) << "slullama: serve is not implemented yet\n";
    return 1;
}

} // namespace slullama
