#pragma once

// Bearer-token check for the daemon's HTTP endpoint. The comparison takes the same time
// whatever the presented value is, so a client cannot learn the token byte by byte.

#include <QByteArray>
#include <QByteArrayView>
#include <QString>

namespace slullama {

// True when a and b are equal. Time depends only on the lengths, never on where they differ.
bool constantTimeEquals(QByteArrayView a, QByteArrayView b);

// True when `bind` only accepts connections from this host (127.0.0.0/8, ::1, localhost).
bool isLoopbackBind(const QString &bind);

class Auth final
{
public:
    explicit Auth(const QString &token = {});

    bool enabled() const { return m_enabled; }
    // `authorization` is the raw value of the Authorization header (empty if absent).
    bool isAuthorized(QByteArrayView authorization) const;

private:
    // Only the digest of the token is kept and compared: equal-length inputs make the
    // comparison's duration independent of the presented token's length too.
    QByteArray m_digest;
    bool m_enabled = false;
};

} // namespace slullama
