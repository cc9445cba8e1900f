#include "requestheadinjector.h"

#include <algorithm>

namespace slullama {

namespace {

bool isFieldValue(QByteArrayView value)
{
    // RFC 9110 5.5: VCHAR, SP, HTAB and obs-text; anything else could end the line early.
    return std::all_of(value.begin(), value.end(), [](char c) {
        const auto u = static_cast<unsigned char>(c);
        return u == '\t' || (u >= 0x20 && u != 0x7f);
    });
}

// Where the empty line that ends `head` starts: the new header goes just before it, so the
// request line and every header the client wrote keep their bytes and order.
qsizetype terminatorStart(QByteArrayView head)
{
    const qsizetype n = head.size();
    return (n >= 2 && head[n - 2] == '\r') ? n - 2 : n - 1;
}

} // namespace

RequestHeadInjector::RequestHeadInjector(QByteArrayView name, QByteArrayView value)
    : m_name(name.toByteArray())
{
    // Framing is all that matters here; the daemon judges Host itself.
    m_limits.requireHost = false;
    if (!name.isEmpty() && isFieldValue(name) && isFieldValue(value) && !name.contains(':'))
        m_line = m_name + ": " + value.toByteArray() + "\r\n";
    else
        m_state = State::PassThrough;
}

RequestHeadInjector::~RequestHeadInjector()
{
    // The value is a secret; do not leave it in freed memory.
    m_line.fill('\0');
    m_out.fill('\0');
}

RequestHeadInjector::Piece RequestHeadInjector::next(QByteArrayView in)
{
    if (in.isEmpty())
        return {};
    switch (m_state) {
    case State::PassThrough:
        return {in, in.size()};
    case State::LengthBody: {
        const qsizetype n = qsizetype(std::min<qint64>(m_remaining, in.size()));
        m_remaining -= n;
        if (m_remaining == 0)
            m_state = State::Head;
        return {in.first(n), n};
    }
    case State::ChunkedBody: {
        const http::ChunkedDecoder::Step step = m_chunked.feed(in);
        if (step.error || (step.consumed == 0 && !step.done)) {
            m_state = State::PassThrough;
            return {in, in.size()};
        }
        if (step.done)
            m_state = State::Head;
        return {in.first(step.consumed), step.consumed};
    }
    case State::Head:
        break;
    }

    if (m_pending.isEmpty()) {
        // The usual case: the whole head arrived in one read; parse it where it lies.
        const auto r = http::parseRequestHead(in, m_limits);
        if (r.state == http::ParseState::Complete)
            return onHead(r, in.first(r.consumed), r.consumed);
        if (r.state == http::ParseState::Error) {
            m_state = State::PassThrough;
            return {in, in.size()};
        }
        m_pending = in.toByteArray();
        return {QByteArrayView(), in.size()};
    }

    const qsizetype held = m_pending.size();
    m_pending.append(in);
    const auto r = http::parseRequestHead(m_pending, m_limits);
    if (r.state == http::ParseState::Incomplete)
        return {QByteArrayView(), in.size()};
    if (r.state == http::ParseState::Error) {
        m_state = State::PassThrough;
        m_out = std::move(m_pending);
        m_pending = QByteArray();
        return {m_out, in.size()};
    }
    // The held prefix alone was incomplete, so the head ends inside `in`: consumed > held.
    const Piece piece = onHead(r, QByteArrayView(m_pending).first(r.consumed), r.consumed - held);
    m_pending = QByteArray();
    return piece;
}

RequestHeadInjector::Piece
RequestHeadInjector::onHead(const http::ParseResult<http::RequestHead> &r, QByteArrayView head,
                            qsizetype consumed)
{
    ++m_heads;
    const http::RequestHead &h = r.head;
    if (h.headers.contains(m_name)) {
        m_out = head.toByteArray();
    } else {
        const qsizetype at = terminatorStart(head);
        m_out.fill('\0');
        m_out.clear();
        m_out.reserve(head.size() + m_line.size());
        m_out.append(head.first(at));
        m_out.append(m_line);
        m_out.append(head.sliced(at));
        ++m_injected;
    }

    // After a CONNECT or an Upgrade the bytes may no longer be HTTP/1.x at all.
    if (h.method == "CONNECT" || h.headers.contains("upgrade")) {
        m_state = State::PassThrough;
        return {m_out, consumed};
    }
    const http::BodyFraming framing = http::requestBodyFraming(h);
    switch (framing.kind) {
    case http::BodyFraming::None:
        m_state = State::Head;
        break;
    case http::BodyFraming::Length:
        m_remaining = framing.length;
        m_state = m_remaining > 0 ? State::LengthBody : State::Head;
        break;
    case http::BodyFraming::Chunked:
        m_chunked = http::ChunkedDecoder();
        m_state = State::ChunkedBody;
        break;
    case http::BodyFraming::UntilClose:
    case http::BodyFraming::Invalid:
        m_state = State::PassThrough;
        break;
    }
    return {m_out, consumed};
}

void RequestHeadInjector::feed(QByteArrayView in, QByteArray &out)
{
    while (!in.isEmpty()) {
        const Piece piece = next(in);
        out.append(piece.bytes);
        in = in.sliced(piece.consumed);
    }
}

QByteArray RequestHeadInjector::finish()
{
    m_state = State::PassThrough;
    QByteArray held = std::move(m_pending);
    m_pending = QByteArray();
    return held;
}

} // namespace slullama
