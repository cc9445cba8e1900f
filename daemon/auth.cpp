#include "auth.h"

#include <QCryptographicHash>
#include <QHostAddress>

namespace slullama {

namespace {

QByteArray digestOf(QByteArrayView value)
{
    return QCryptographicHash::hash(value, QCryptographicHash::Sha256);
}

bool isSpace(char c)
{
    return c == ' ' || c == '\t';
}

} // namespace

bool constantTimeEquals(QByteArrayView a, QByteArrayView b)
{
    // Walk the longer input completely so the loop length does not depend on the content.
    const qsizetype n = std::max(a.size(), b.size());
    unsigned diff = a.size() == b.size() ? 0u : 1u;
    for (qsizetype i = 0; i < n; ++i) {
        const unsigned char x = i < a.size() ? static_cast<unsigned char>(a[i]) : 0u;
        const unsigned char y = i < b.size() ? static_cast<unsigned char>(b[i]) : 0u;
        diff |= static_cast<unsigned>(x ^ y);
    }
    // volatile keeps the compiler from turning the loop into an early-exit comparison.
    volatile unsigned result = diff;
    return result == 0;
}

bool isLoopbackBind(const QString &bind)
{
    if (bind.compare(QLatin1String("localhost"), Qt::CaseInsensitive) == 0)
        return true;
    const QHostAddress address(bind);
    return !address.isNull() && address.isLoopback();
}

Auth::Auth(const QString &token) : m_enabled(!token.isEmpty())
{
    if (m_enabled)
        m_digest = digestOf(token.toUtf8());
}

bool Auth::isAuthorized(QByteArrayView authorization) const
{
    if (!m_enabled)
        return true;
    // "Bearer" is case-insensitive (RFC 9110 auth-scheme); surrounding blanks are allowed.
    // A malformed value still goes through the digest so every refusal costs the same.
    qsizetype i = 0;
    while (i < authorization.size() && isSpace(authorization[i]))
        ++i;
    constexpr QByteArrayView scheme("bearer");
    bool wellFormed = authorization.size() - i > scheme.size()
        && authorization.sliced(i, scheme.size()).compare(scheme, Qt::CaseInsensitive) == 0
        && isSpace(authorization[i + scheme.size()]);
    QByteArrayView presented;
    if (wellFormed) {
        i += scheme.size();
        while (i < authorization.size() && isSpace(authorization[i]))
            ++i;
        qsizetype end = authorization.size();
        while (end > i && isSpace(authorization[end - 1]))
            --end;
        presented = authorization.sliced(i, end - i);
        wellFormed = !presented.isEmpty();
    }
    const bool same = constantTimeEquals(digestOf(presented), m_digest);
    return same && wellFormed;
}

} // namespace slullama
