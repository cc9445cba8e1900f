#include "keys.h"

#include "keysfile.h"

#include <QTextStream>

namespace slullama {

int runKeysCommand(const cli::Invocation &invocation, const Config &config)
{
    QTextStream out(stdout);
    QTextStream err(stderr);
    const QString path = effectiveKeysFile(config);
    const QString action = invocation.keysArgs.value(0);
    const QString name = invocation.keysArgs.value(1);
    if (action == u"add") {
        const auto key = addKey(path, name, invocation.admin);
        if (!key) {
            err << "slullama keys: " << key.error() << "\n";
            return 1;
        }
        // The key alone on stdout, so `KEY=$(slullama keys add bob)` works.
        out << *key << "\n";
        out.flush();
        err << "added " << (invocation.admin ? "admin " : "") << "key \"" << name << "\" to "
            << path << "\nIt is shown only now: give it to " << name
            << " (it goes where the token did, e.g. [client] token).\n";
        return 0;
    }
    if (action == u"revoke") {
        if (const VoidResult revoked = revokeKey(path, name); !revoked) {
            err << "slullama keys: " << revoked.error() << "\n";
            return 1;
        }
        err << "revoked key \"" << name << "\" in " << path
            << " (a running daemon refuses it within seconds)\n";
        return 0;
    }
    const auto file = loadKeysFile(path);
    if (!file) {
        err << "slullama keys: " << file.error() << "\n";
        return 1;
    }
    if (file->keys.isEmpty()) {
        err << "no keys in " << path << " (add one with `slullama keys add NAME`)\n";
        return 0;
    }
    out << formatKeyList(*file);
    return 0;
}

} // namespace slullama
