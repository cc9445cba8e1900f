// Build-time tool, not installed: writes the daemon's built-in job template to a file, so the
// packaged share/slullama/job-template.sh is the very text the daemon renders and cannot drift
// from it.

#include "jobtemplate.h"

#include <QSaveFile>
#include <QString>

#include <cstdio>

int main(int argc, char **argv)
{
    if (argc != 2) {
        std::fprintf(stderr, "usage: %s OUTPUT\n", argv[0]);
        return 2;
    }
    QSaveFile file(QString::fromLocal8Bit(argv[1]));
    if (!file.open(QIODevice::WriteOnly)) {
        std::fprintf(stderr, "%s: cannot write %s: %s\n", argv[0], argv[1],
                     qUtf8Printable(file.errorString()));
        return 1;
    }
    file.write(slullama::builtInJobTemplate().toUtf8());
    if (!file.commit()) {
        std::fprintf(stderr, "%s: cannot write %s: %s\n", argv[0], argv[1],
                     qUtf8Printable(file.errorString()));
        return 1;
    }
    return 0;
}
