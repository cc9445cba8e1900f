#include "commands.h"

#include <QTextStream>

namespace slullama {

// placeholder until the tunnel owner implements it
int runConnect(const Config &)
{
    QTextStream(stderr) << "slullama: connect is not implemented yet\n";
    return 1;
}

} // namespace slullama
