#pragma once

// What the gateway (docs/TEAM.md) keeps about one request/response exchange of a Connection:
// who sent it, where it went, what came back. It taps the relayed response to count bytes and
// tokens (and to remember metadata answers) without holding the stream.

#include "httpparser.h"
#include "keystore.h"
#include "upstreamrelay.h"
#include "usage.h"

#include <QByteArray>

namespace slullama {

class ExchangeRecord final : public ResponseTap
{
public:
    void responseHead(const http::ResponseHead &head, qsizetype headBytes) override;
    void responseBody(QByteArrayView bytes) override;

    Identity identity;
    bool authenticated = false;
    bool active = false; // between Gateway::begin() and Gateway::end()
    QByteArray method;
    QByteArray path;
    QByteArray route; // normalised path: the metrics label
    qint64 startedMs = 0;
    bool proxied = false; // a model-server request of identity.user (usage, in flight)
    bool limited = false; // holds a RateLimiter slot
    bool scanTokens = false;
    bool capture = false; // keep the (small) body for the metadata cache
    double waitedSeconds = 0;

    int status = 0; // 0 until an answer started
    qint64 bytesIn = 0; // request body bytes forwarded
    qint64 bytesOut = 0; // response bytes written (head and body)
    TokenScanner tokens;
    QByteArray captured;
    bool captureOverflow = false;

private:
    friend class Gateway;
    void reset();
    void feedDecoded(QByteArrayView bytes);

    bool m_chunked = false;
    http::ChunkedDecoder m_decoder;
    QByteArray m_decoded;
};

} // namespace slullama
