#pragma once

// Pure, incremental filter for the client -> server direction of one HTTP/1.x connection: adds a
// header (the laptop tunnel's `Authorization: Bearer <token>`) to every request head that has no
// header of that name, and passes everything else through byte for byte. No sockets, no Qt event
// loop; the tunnel worker feeds it what it reads from the local socket.
//
// It finds each head on a keep-alive or pipelined connection by following the body framing of the
// previous request (Content-Length or chunked, scanned, never re-encoded). Whatever it cannot
// follow — a malformed head, a CONNECT, an Upgrade request — switches it to pass-through for the
// rest of the connection: it may then miss a head, but it never alters a byte it does not
// understand. `Expect: 100-continue` needs nothing special: the head goes out at once and the body
// is followed by its framing whenever the client sends it (a client that gets a final answer
// instead of 100 and skips the body must close the connection, RFC 9110 10.1.1).

#include <QByteArray>
#include <QByteArrayView>

#include "httpparser.h"

namespace slullama {

class RequestHeadInjector final
{
public:
    // `name`/`value` of the header to add, e.g. "Authorization" and "Bearer abc". A value with a
    // control character (CR, LF, NUL, ...) could split the head: then nothing is ever added
    // (isEnabled() is false) and all bytes pass through.
    RequestHeadInjector(QByteArrayView name, QByteArrayView value);
    ~RequestHeadInjector();
    RequestHeadInjector(const RequestHeadInjector &) = delete;
    RequestHeadInjector &operator=(const RequestHeadInjector &) = delete;

    struct Piece
    {
        // Bytes to forward now, in order. Points into the input (body and pass-through bytes: no
        // copy) or into the injector (a completed head); valid until the next call.
        QByteArrayView bytes;
        qsizetype consumed = 0; // input bytes used up; > 0 whenever the input was not empty
    };

    // One step over `in`; call again with in.sliced(consumed) until all of it is consumed.
    // A piece may be empty while the bytes of an incomplete head are held back.
    Piece next(QByteArrayView in);

    // Convenience (copies): appends everything `in` turns into to `out`.
    void feed(QByteArrayView in, QByteArray &out);

    // The client finished sending: returns the held bytes of an incomplete head, unchanged, and
    // switches to pass-through.
    QByteArray finish();

    bool isEnabled() const { return !m_line.isEmpty(); }
    bool isPassThrough() const { return m_state == State::PassThrough; }
    qsizetype heldBytes() const { return m_pending.size(); }
    int headsSeen() const { return m_heads; }
    int headsChanged() const { return m_injected; }

private:
    enum class State { Head, LengthBody, ChunkedBody, PassThrough };

    Piece onHead(const http::ParseResult<http::RequestHead> &r, QByteArrayView head,
                 qsizetype consumed);

    QByteArray m_name;
    QByteArray m_line; // "Name: value\r\n"; empty = disabled
    State m_state = State::Head;
    QByteArray m_pending; // bytes of a head not yet complete
    QByteArray m_out; // the last completed (possibly extended) head
    qint64 m_remaining = 0;
    http::ChunkedDecoder m_chunked;
    http::Limits m_limits;
    int m_heads = 0;
    int m_injected = 0;
};

} // namespace slullama
