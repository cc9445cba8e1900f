#pragma once

// Pure HTTP/1.x message-head parsing and body framing, with explicit limits.
// No sockets, no Qt event loop: easy to table-test and to fuzz. Used by the daemon's
// proxy (both directions) and by the test support servers.

#include <QByteArray>
#include <QByteArrayView>
#include <QList>

namespace slullama::http {

struct Limits
{
    qsizetype maxHeadBytes = 64 * 1024;   // request/status line + all header lines
    qsizetype maxLineLength = 16 * 1024;  // any single line
    int maxHeaderCount = 128;
    // RFC 9112 3.2: an HTTP/1.1 request without exactly one Host gets 400. Off only for tests
    // or tools that hand-write requests.
    bool requireHost = true;
};

struct Header
{
    QByteArray name;   // as received
    QByteArray value;  // surrounding whitespace trimmed
};

// Ordered header list; name look-ups are ASCII case-insensitive.
class Headers
{
public:
    QByteArray value(QByteArrayView name) const;   // first match, empty if none
    QList<QByteArray> values(QByteArrayView name) const;
    bool contains(QByteArrayView name) const;
    void set(const QByteArray &name, const QByteArray &value); // replaces all of that name
    void add(const QByteArray &name, const QByteArray &value);
    int remove(QByteArrayView name);                            // returns how many were removed
    // True when a comma-separated header (e.g. Connection) lists `token` (case-insensitive).
    bool hasToken(QByteArrayView name, QByteArrayView token) const;

    const QList<Header> &list() const { return m_list; }
    qsizetype size() const { return m_list.size(); }

private:
    QList<Header> m_list;
};

struct RequestHead
{
    QByteArray method;
    QByteArray target;     // as sent: path plus optional ?query
    QByteArray path;       // target up to '?'
    QByteArray query;      // after '?', without it
    int versionMinor = 1;  // HTTP/1.<minor>
    Headers headers;

    bool keepAlive() const; // HTTP/1.1 default on unless "Connection: close"; 1.0 needs keep-alive
};

struct ResponseHead
{
    int versionMinor = 1;
    int status = 200;
    QByteArray reason;
    Headers headers;
};

enum class ParseState { Incomplete, Complete, Error };

template<typename Head>
struct ParseResult
{
    ParseState state = ParseState::Incomplete;
    Head head;
    qsizetype consumed = 0;  // bytes of the head, including the final CRLF CRLF (when Complete)
    int errorStatus = 0;     // when Error: 400, 414, 431, 501 or 505 — what to answer
                             // (responses: always 502, what a proxy answers its client)
    QByteArray error;        // when Error: a short reason for the response body and the log
};

// Parses the request head at the start of `data`. Accepts CRLF and bare LF line ends.
// Rejects obsolete line folding, spaces before the colon, invalid tokens and control bytes.
ParseResult<RequestHead> parseRequestHead(QByteArrayView data, const Limits &limits = {});
ParseResult<ResponseHead> parseResponseHead(QByteArrayView data, const Limits &limits = {});

// How a message body is delimited (RFC 9112 section 6).
struct BodyFraming
{
    enum Kind { None, Length, Chunked, UntilClose, Invalid } kind = None;
    qint64 length = 0;     // for Length
    QByteArray error;      // for Invalid (answer errorStatus)
    int errorStatus = 0;   // for Invalid: 400 (501 for an unknown transfer coding in a request,
                           // 502 for a response)
};

BodyFraming requestBodyFraming(const RequestHead &head);
// `requestMethod` matters: a response to HEAD has no body whatever its headers say.
BodyFraming responseBodyFraming(QByteArrayView requestMethod, const ResponseHead &head);

// Incremental chunked-transfer decoder. It can also be used only to find where a chunked
// body ends (pass no output), so a relay can forward the raw bytes unchanged.
class ChunkedDecoder
{
public:
    struct Step
    {
        qsizetype consumed = 0;  // bytes of the input that belong to this body
        bool done = false;       // the terminating chunk and trailers have been consumed
        bool error = false;
        QByteArray errorText;
    };

    explicit ChunkedDecoder(qint64 maxChunkSize = qint64(1) << 40) : m_maxChunkSize(maxChunkSize) {}

    // Consumes as much of `input` as belongs to the body; appends decoded payload to `out`
    // when given. After done or error, consumes nothing more.
    Step feed(QByteArrayView input, QByteArray *out = nullptr);
    bool isDone() const { return m_state == State::Done; }
    bool hasFailed() const { return m_state == State::Failed; }

private:
    static constexpr qsizetype kMaxLineLength = 16 * 1024;      // a size line or trailer line
    static constexpr qsizetype kMaxTrailerBytes = 64 * 1024;

    enum class State { Size, SizeExt, SizeLf, Data, DataCr, DataLf, Trailer, TrailerLf, Done, Failed };
    State m_state = State::Size;
    qint64 m_maxChunkSize;
    qint64 m_remaining = 0;
    int m_sizeDigits = 0;
    qsizetype m_trailerLineLength = 0;
    qsizetype m_trailerBytes = 0;
    bool m_inExtension = false;  // past the ';' of a chunk extension
    QByteArray m_error;
};

QByteArray serialize(const RequestHead &head);   // request line + headers + CRLF
QByteArray serialize(const ResponseHead &head);  // status line + headers + CRLF
QByteArray reasonPhrase(int status);

// Helpers for writing chunked bodies.
QByteArray encodeChunk(QByteArrayView payload);  // empty payload is NOT the terminator
inline QByteArray lastChunk() { return QByteArrayLiteral("0\r\n\r\n"); }

} // namespace slullama::http
