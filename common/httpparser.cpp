#include "httpparser.h"

#include <cstring>

namespace slullama::http {

namespace {

constexpr char toLowerAscii(char c)
{
    return (c >= 'A' && c <= 'Z') ? char(c + ('a' - 'A')) : c;
}

bool equalsIgnoreCase(QByteArrayView a, QByteArrayView b)
{
    if (a.size() != b.size())
        return false;
    for (qsizetype i = 0; i < a.size(); ++i) {
        if (toLowerAscii(a[i]) != toLowerAscii(b[i]))
            return false;
    }
    return true;
}

bool startsWithIgnoreCase(QByteArrayView s, QByteArrayView prefix)
{
    return s.size() >= prefix.size() && equalsIgnoreCase(s.first(prefix.size()), prefix);
}

// RFC 9110 tchar, as a lookup table: the parser is on every request's hot path.
struct TokenTable
{
    bool tchar[256] = {};
    constexpr TokenTable()
    {
        for (int c = '0'; c <= '9'; ++c)
            tchar[c] = true;
        for (int c = 'a'; c <= 'z'; ++c)
            tchar[c] = true;
        for (int c = 'A'; c <= 'Z'; ++c)
            tchar[c] = true;
        for (char c : {'!', '#', '$', '%', '&', '\'', '*', '+', '-', '.', '^', '_', '`', '|', '~'})
            tchar[uchar(c)] = true;
    }
};
constexpr TokenTable kTokens;

bool isTokenChar(char c)
{
    return kTokens.tchar[uchar(c)];
}

bool isToken(QByteArrayView s)
{
    if (s.isEmpty())
        return false;
    for (char c : s) {
        if (!isTokenChar(c))
            return false;
    }
    return true;
}

// Field values: VCHAR, obs-text, SP and HTAB. Everything else (NUL, CR, other controls, DEL) is
// refused, because a relay that passes them on enables request smuggling downstream.
bool isFieldValueChar(char c)
{
    const uchar u = uchar(c);
    return u == '\t' || (u >= 0x20 && u != 0x7f);
}

// A byte that can never appear anywhere in a head line (CR is handled by the line splitter).
bool isForbiddenInHead(char c)
{
    const uchar u = uchar(c);
    return (u < 0x20 && u != '\t' && u != '\r') || u == 0x7f;
}

QByteArrayView trimOws(QByteArrayView s)
{
    qsizetype b = 0;
    qsizetype e = s.size();
    while (b < e && (s[b] == ' ' || s[b] == '\t'))
        ++b;
    while (e > b && (s[e - 1] == ' ' || s[e - 1] == '\t'))
        --e;
    return s.sliced(b, e - b);
}

// Calls `fn` for each non-empty element of a comma-separated list value.
template<typename Fn>
void forEachListElement(QByteArrayView value, Fn fn)
{
    qsizetype start = 0;
    while (start <= value.size()) {
        qsizetype comma = value.indexOf(',', start);
        if (comma < 0)
            comma = value.size();
        const QByteArrayView element = trimOws(value.sliced(start, comma - start));
        if (!element.isEmpty())
            fn(element);
        start = comma + 1;
    }
}

template<typename Head>
ParseResult<Head> fail(int status, const char *why)
{
    ParseResult<Head> r;
    r.state = ParseState::Error;
    r.errorStatus = status;
    r.error = QByteArray(why);
    return r;
}

// Splits the head into lines and hands each complete one to `onLine(line, isFirst)`.
// Shared by requests and responses; only the first line and the error statuses differ.
struct LineScanner
{
    QByteArrayView data;
    const Limits &limits;
    int firstLineTooLongStatus;  // 414 for requests, 502 for responses
    int headTooBigStatus;        // 431 for requests, 502 for responses
    int badStatus;               // 400 for requests, 502 for responses
};

enum class ScanOutcome { NeedMore, Done, Error };

struct ScanState
{
    ScanOutcome outcome = ScanOutcome::NeedMore;
    int errorStatus = 0;
    const char *error = nullptr;
    qsizetype consumed = 0;
};

// Walks lines; `onLine` returns nullptr when the line is fine, else an error text (and sets the
// status through the reference). Returns when the empty line ending the head is found.
template<typename OnLine>
ScanState scanHead(const LineScanner &s, OnLine onLine)
{
    ScanState st;
    qsizetype pos = 0;
    bool seenFirst = false;
    const qsizetype n = s.data.size();
    const char *const base = s.data.data();

    while (true) {
        const qsizetype avail = n - pos;
        const void *nl = avail > 0 ? std::memchr(base + pos, '\n', size_t(avail)) : nullptr;
        const qsizetype lineEnd = nl ? qsizetype(static_cast<const char *>(nl) - base) : -1;
        const qsizetype scanEnd = lineEnd >= 0 ? lineEnd : n;

        // Reject impossible bytes early, even before the line is complete: a TLS client or a
        // binary protocol speaking to us gets its 400 at once instead of waiting for a limit.
        for (qsizetype i = pos; i < scanEnd; ++i) {
            const char c = base[i];
            if (isForbiddenInHead(c) || (c == '\r' && i + 1 < n && base[i + 1] != '\n')
                || (c == '\r' && i + 1 < scanEnd)) {
                st.outcome = ScanOutcome::Error;
                st.errorStatus = s.badStatus;
                st.error = c == '\r' ? "bare CR in message head" : "control character in message head";
                return st;
            }
        }

        const qsizetype contentLen = (lineEnd >= 0 ? lineEnd : n) - pos
                                     - ((lineEnd > pos && base[lineEnd - 1] == '\r') ? 1 : 0);
        if (contentLen > s.limits.maxLineLength
            || (lineEnd < 0 && n - pos > s.limits.maxLineLength)) {
            st.outcome = ScanOutcome::Error;
            st.errorStatus = seenFirst ? s.headTooBigStatus : s.firstLineTooLongStatus;
            st.error = seenFirst ? "header line too long" : "request line too long";
            return st;
        }
        if ((lineEnd >= 0 ? lineEnd + 1 : n) > s.limits.maxHeadBytes) {
            st.outcome = ScanOutcome::Error;
            st.errorStatus = s.headTooBigStatus;
            st.error = "message head too large";
            return st;
        }
        if (lineEnd < 0)
            return st;  // NeedMore

        const QByteArrayView line(base + pos, contentLen);
        pos = lineEnd + 1;
        if (line.isEmpty()) {
            if (!seenFirst)
                continue;  // RFC 9112 2.2: ignore empty lines before the request line
            st.outcome = ScanOutcome::Done;
            st.consumed = pos;
            return st;
        }
        int status = s.badStatus;
        if (const char *err = onLine(line, !seenFirst, status)) {
            st.outcome = ScanOutcome::Error;
            st.errorStatus = status;
            st.error = err;
            return st;
        }
        seenFirst = true;
    }
}

const char *parseHeaderLine(QByteArrayView line, Headers &headers, const Limits &limits,
                            int &status, int tooManyStatus)
{
    if (line.front() == ' ' || line.front() == '\t')
        return "obsolete line folding is not accepted";
    const qsizetype colon = line.indexOf(':');
    if (colon < 0)
        return "header line without colon";
    const QByteArrayView name = line.first(colon);
    if (name.isEmpty())
        return "empty header name";
    if (!isToken(name))
        return (name.back() == ' ' || name.back() == '\t') ? "whitespace before colon in header"
                                                           : "invalid header name";
    const QByteArrayView value = trimOws(line.sliced(colon + 1));
    for (char c : value) {
        if (!isFieldValueChar(c))
            return "invalid character in header value";
    }
    if (headers.size() >= limits.maxHeaderCount) {
        status = tooManyStatus;
        return "too many header fields";
    }
    headers.add(name.toByteArray(), value.toByteArray());
    return nullptr;
}

// "HTTP/1.1" → minor 1. Returns -1 when malformed, -2 when well-formed but not HTTP/1.x.
int parseVersion(QByteArrayView v)
{
    if (v.size() != 8 || !v.startsWith("HTTP/") || v[6] != '.')
        return -1;
    const char major = v[5];
    const char minor = v[7];
    if (major < '0' || major > '9' || minor < '0' || minor > '9')
        return -1;
    if (major != '1')
        return -2;
    return minor - '0';
}

// Content-Length may repeat (as lines or list elements) only with one and the same value.
// Returns -1 when absent, -2 when invalid.
qint64 contentLength(const Headers &headers, QByteArray *error)
{
    qint64 result = -1;
    bool bad = false;
    for (const Header &h : headers.list()) {
        if (!equalsIgnoreCase(h.name, "content-length"))
            continue;
        bool sawElement = false;
        forEachListElement(h.value, [&](QByteArrayView element) {
            sawElement = true;
            qint64 v = 0;
            for (char c : element) {
                if (c < '0' || c > '9' || v > (qint64(1) << 58)) {
                    bad = true;
                    return;
                }
                v = v * 10 + (c - '0');
            }
            if (result >= 0 && result != v)
                bad = true;
            result = v;
        });
        if (!sawElement)
            bad = true;
    }
    if (bad) {
        *error = "invalid or conflicting Content-Length";
        return -2;
    }
    return result;
}

struct TransferCodings
{
    bool present = false;
    bool chunkedLast = false;
    bool chunkedElsewhere = false;  // chunked applied twice or not last
    bool other = false;             // a coding other than chunked
};

TransferCodings transferCodings(const Headers &headers)
{
    TransferCodings tc;
    bool lastWasChunked = false;
    for (const Header &h : headers.list()) {
        if (!equalsIgnoreCase(h.name, "transfer-encoding"))
            continue;
        tc.present = true;
        forEachListElement(h.value, [&](QByteArrayView element) {
            qsizetype semi = element.indexOf(';');
            const QByteArrayView coding = trimOws(semi < 0 ? element : element.first(semi));
            if (lastWasChunked)
                tc.chunkedElsewhere = true;
            lastWasChunked = equalsIgnoreCase(coding, "chunked");
            if (!lastWasChunked)
                tc.other = true;
        });
    }
    tc.chunkedLast = lastWasChunked;
    return tc;
}

} // namespace

// ---- Headers ----------------------------------------------------------------------------------

QByteArray Headers::value(QByteArrayView name) const
{
    for (const Header &h : m_list) {
        if (equalsIgnoreCase(h.name, name))
            return h.value;
    }
    return {};
}

QList<QByteArray> Headers::values(QByteArrayView name) const
{
    QList<QByteArray> out;
    for (const Header &h : m_list) {
        if (equalsIgnoreCase(h.name, name))
            out.append(h.value);
    }
    return out;
}

bool Headers::contains(QByteArrayView name) const
{
    for (const Header &h : m_list) {
        if (equalsIgnoreCase(h.name, name))
            return true;
    }
    return false;
}

void Headers::set(const QByteArray &name, const QByteArray &value)
{
    bool replaced = false;
    for (qsizetype i = 0; i < m_list.size();) {
        if (equalsIgnoreCase(m_list[i].name, name)) {
            if (!replaced) {
                m_list[i] = Header{name, value};
                replaced = true;
                ++i;
            } else {
                m_list.removeAt(i);
            }
        } else {
            ++i;
        }
    }
    if (!replaced)
        m_list.append(Header{name, value});
}

void Headers::add(const QByteArray &name, const QByteArray &value)
{
    m_list.append(Header{name, value});
}

int Headers::remove(QByteArrayView name)
{
    const qsizetype before = m_list.size();
    m_list.removeIf([&](const Header &h) { return equalsIgnoreCase(h.name, name); });
    return int(before - m_list.size());
}

bool Headers::hasToken(QByteArrayView name, QByteArrayView token) const
{
    bool found = false;
    for (const Header &h : m_list) {
        if (found || !equalsIgnoreCase(h.name, name))
            continue;
        forEachListElement(h.value, [&](QByteArrayView element) {
            const qsizetype semi = element.indexOf(';');
            if (equalsIgnoreCase(trimOws(semi < 0 ? element : element.first(semi)), token))
                found = true;
        });
    }
    return found;
}

bool RequestHead::keepAlive() const
{
    if (headers.hasToken("connection", "close"))
        return false;
    if (versionMinor >= 1)
        return true;
    return headers.hasToken("connection", "keep-alive");
}

// ---- Heads ------------------------------------------------------------------------------------

ParseResult<RequestHead> parseRequestHead(QByteArrayView data, const Limits &limits)
{
    ParseResult<RequestHead> result;
    RequestHead &head = result.head;
    const LineScanner scanner{data, limits, 414, 431, 400};

    const ScanState st = scanHead(scanner, [&](QByteArrayView line, bool first,
                                              int &status) -> const char * {
        if (!first)
            return parseHeaderLine(line, head.headers, limits, status, 431);

        // request-line = method SP request-target SP HTTP-version, single spaces only.
        const qsizetype sp1 = line.indexOf(' ');
        const qsizetype sp2 = sp1 < 0 ? -1 : line.indexOf(' ', sp1 + 1);
        if (sp1 <= 0 || sp2 < 0 || line.indexOf(' ', sp2 + 1) >= 0)
            return "malformed request line";
        const QByteArrayView method = line.first(sp1);
        const QByteArrayView target = line.sliced(sp1 + 1, sp2 - sp1 - 1);
        const QByteArrayView version = line.sliced(sp2 + 1);
        if (!isToken(method))
            return "invalid method";
        if (target.isEmpty())
            return "empty request target";
        for (char c : target) {
            if (c == '\t' || c == '#')
                return "invalid character in request target";
        }
        const int minor = parseVersion(version);
        if (minor == -1)
            return "malformed HTTP version";
        if (minor == -2) {
            status = 505;
            return "only HTTP/1.x is supported";
        }
        head.method = method.toByteArray();
        head.target = target.toByteArray();
        head.versionMinor = minor;

        // absolute-form (RFC 9112 3.2.2) must be accepted; its path is what routes on.
        QByteArrayView pathAndQuery = target;
        const bool absoluteForm
            = startsWithIgnoreCase(target, "http://") || startsWithIgnoreCase(target, "https://");
        // Anything but origin-form ("/..."), absolute-form, "*" or CONNECT's authority-form is
        // not a request target (found by tests/fuzz/fuzz_requesthead: "GET ?x" routed as "/").
        if (!absoluteForm && target.front() != '/' && target != "*" && method != "CONNECT")
            return "invalid request target";
        if (absoluteForm) {
            const qsizetype authority = target.indexOf("://") + 3;
            qsizetype slash = authority;
            while (slash < target.size() && target[slash] != '/' && target[slash] != '?')
                ++slash;
            pathAndQuery = target.sliced(slash);
        }
        const qsizetype q = pathAndQuery.indexOf('?');
        if (q < 0) {
            head.path = pathAndQuery.toByteArray();
        } else {
            head.path = pathAndQuery.first(q).toByteArray();
            head.query = pathAndQuery.sliced(q + 1).toByteArray();
        }
        if (head.path.isEmpty())
            head.path = QByteArrayLiteral("/");
        return nullptr;
    });

    switch (st.outcome) {
    case ScanOutcome::NeedMore:
        return result;
    case ScanOutcome::Error:
        return fail<RequestHead>(st.errorStatus, st.error);
    case ScanOutcome::Done:
        break;
    }

    // RFC 9112 3.2: a 1.1 request without exactly one Host is answered 400.
    if (limits.requireHost && head.versionMinor >= 1 && head.headers.values("host").size() != 1)
        return fail<RequestHead>(400, "HTTP/1.1 request needs exactly one Host header");
    if (!limits.requireHost && head.headers.values("host").size() > 1)
        return fail<RequestHead>(400, "more than one Host header");

    const BodyFraming framing = requestBodyFraming(head);
    if (framing.kind == BodyFraming::Invalid) {
        ParseResult<RequestHead> r;
        r.state = ParseState::Error;
        r.errorStatus = framing.errorStatus;
        r.error = framing.error;
        return r;
    }

    result.state = ParseState::Complete;
    result.consumed = st.consumed;
    return result;
}

ParseResult<ResponseHead> parseResponseHead(QByteArrayView data, const Limits &limits)
{
    ParseResult<ResponseHead> result;
    ResponseHead &head = result.head;
    const LineScanner scanner{data, limits, 502, 502, 502};

    const ScanState st = scanHead(scanner, [&](QByteArrayView line, bool first,
                                              int &status) -> const char * {
        if (!first)
            return parseHeaderLine(line, head.headers, limits, status, 502);

        // status-line = HTTP-version SP 3DIGIT SP [reason-phrase]; a missing final SP is
        // tolerated because some servers omit it with an empty reason.
        if (line.size() < 12 || line[8] != ' ')
            return "malformed status line";
        const int minor = parseVersion(line.first(8));
        if (minor < 0)
            return minor == -2 ? "upstream is not HTTP/1.x" : "malformed HTTP version";
        int code = 0;
        for (int i = 9; i < 12; ++i) {
            if (line[i] < '0' || line[i] > '9')
                return "malformed status code";
            code = code * 10 + (line[i] - '0');
        }
        if (code < 100)
            return "malformed status code";
        if (line.size() > 12 && line[12] != ' ')
            return "malformed status line";
        head.versionMinor = minor;
        head.status = code;
        head.reason = line.size() > 13 ? line.sliced(13).toByteArray() : QByteArray();
        return nullptr;
    });

    switch (st.outcome) {
    case ScanOutcome::NeedMore:
        return result;
    case ScanOutcome::Error:
        return fail<ResponseHead>(st.errorStatus, st.error);
    case ScanOutcome::Done:
        break;
    }
    result.state = ParseState::Complete;
    result.consumed = st.consumed;
    return result;
}

// ---- Body framing -----------------------------------------------------------------------------

namespace {
BodyFraming invalid(int status, QByteArray why)
{
    BodyFraming f;
    f.kind = BodyFraming::Invalid;
    f.errorStatus = status;
    f.error = std::move(why);
    return f;
}
} // namespace

BodyFraming requestBodyFraming(const RequestHead &head)
{
    const TransferCodings tc = transferCodings(head.headers);
    if (tc.present) {
        // RFC 9112 6.1: Transfer-Encoding in 1.0 means faulty framing; TE beside CL is a
        // smuggling attempt more often than not, so both are refused rather than guessed.
        if (head.versionMinor == 0)
            return invalid(400, "Transfer-Encoding in an HTTP/1.0 request");
        if (head.headers.contains("content-length"))
            return invalid(400, "both Transfer-Encoding and Content-Length");
        if (tc.other)
            return invalid(501, "unsupported transfer coding");
        if (!tc.chunkedLast || tc.chunkedElsewhere)
            return invalid(400, "chunked must be the final transfer coding, once");
        BodyFraming f;
        f.kind = BodyFraming::Chunked;
        return f;
    }
    QByteArray error;
    const qint64 len = contentLength(head.headers, &error);
    if (len == -2)
        return invalid(400, error);
    BodyFraming f;
    if (len >= 0) {
        f.kind = BodyFraming::Length;
        f.length = len;
    }
    return f;
}

BodyFraming responseBodyFraming(QByteArrayView requestMethod, const ResponseHead &head)
{
    BodyFraming f;
    if (requestMethod == "HEAD" || (head.status >= 100 && head.status < 200) || head.status == 204
        || head.status == 304) {
        return f;
    }
    if (requestMethod == "CONNECT" && head.status >= 200 && head.status < 300) {
        f.kind = BodyFraming::UntilClose;  // the connection becomes a tunnel
        return f;
    }
    const TransferCodings tc = transferCodings(head.headers);
    if (tc.present) {
        // Chunked wins over Content-Length; without chunked last, only close delimits it.
        f.kind = (tc.chunkedLast && !tc.chunkedElsewhere) ? BodyFraming::Chunked
                                                          : BodyFraming::UntilClose;
        return f;
    }
    QByteArray error;
    const qint64 len = contentLength(head.headers, &error);
    if (len == -2)
        return invalid(502, error);
    if (len >= 0) {
        f.kind = BodyFraming::Length;
        f.length = len;
        return f;
    }
    f.kind = BodyFraming::UntilClose;
    return f;
}

// ---- Chunked decoding -------------------------------------------------------------------------

ChunkedDecoder::Step ChunkedDecoder::feed(QByteArrayView input, QByteArray *out)
{
    Step step;
    if (m_state == State::Done) {
        step.done = true;
        return step;
    }
    if (m_state == State::Failed) {
        step.error = true;
        step.errorText = m_error;
        return step;
    }

    const char *p = input.data();
    const qsizetype n = input.size();
    qsizetype i = 0;

    auto failAt = [&](const char *why) {
        m_state = State::Failed;
        m_error = QByteArray(why);
        step.consumed = i;
        step.error = true;
        step.errorText = m_error;
        return step;
    };
    auto endOfSizeLine = [&]() {
        if (m_remaining == 0) {
            m_state = State::Trailer;
            m_trailerLineLength = 0;
        } else {
            m_state = State::Data;
        }
    };
    auto endOfTrailerLine = [&]() -> bool {
        if (m_trailerLineLength == 0) {
            m_state = State::Done;
            return true;
        }
        m_trailerLineLength = 0;
        m_state = State::Trailer;
        return false;
    };

    while (i < n) {
        switch (m_state) {
        case State::Size: {
            const char c = p[i];
            int digit = -1;
            if (c >= '0' && c <= '9')
                digit = c - '0';
            else if (c >= 'a' && c <= 'f')
                digit = c - 'a' + 10;
            else if (c >= 'A' && c <= 'F')
                digit = c - 'A' + 10;
            if (digit >= 0) {
                // Checked before multiplying, so no value of m_maxChunkSize can overflow.
                if (m_remaining > (m_maxChunkSize >> 4))
                    return failAt("chunk size too large");
                m_remaining = m_remaining * 16 + digit;
                if (m_remaining > m_maxChunkSize)
                    return failAt("chunk size too large");
                ++m_sizeDigits;
                ++i;
                break;
            }
            if (m_sizeDigits == 0)
                return failAt("invalid chunk size");
            if (c == ';' || c == ' ' || c == '\t') {
                m_state = State::SizeExt;
                m_inExtension = c == ';';
                m_trailerLineLength = 0;
                ++i;
            } else if (c == '\r') {
                m_state = State::SizeLf;
                ++i;
            } else if (c == '\n') {
                ++i;
                endOfSizeLine();
            } else {
                return failAt("invalid chunk size");
            }
            break;
        }
        case State::SizeExt: {
            // Extensions carry nothing we use; they are skipped but bounded.
            const char c = p[i];
            if (c == '\r') {
                m_state = State::SizeLf;
            } else if (c == '\n') {
                ++i;
                endOfSizeLine();
                break;
            } else if (isForbiddenInHead(c)) {
                return failAt("control character in chunk extension");
            } else if (!m_inExtension && c != ' ' && c != '\t' && c != ';') {
                return failAt("invalid chunk size");  // "1 2": whitespace inside the size
            } else {
                m_inExtension = m_inExtension || c == ';';
                if (++m_trailerLineLength > kMaxLineLength)
                    return failAt("chunk extension too long");
            }
            ++i;
            break;
        }
        case State::SizeLf:
            if (p[i] != '\n')
                return failAt("bare CR in chunk size line");
            ++i;
            endOfSizeLine();
            break;
        case State::Data: {
            const qsizetype take = qsizetype(qMin<qint64>(m_remaining, n - i));
            if (out)
                out->append(p + i, take);
            i += take;
            m_remaining -= take;
            if (m_remaining == 0)
                m_state = State::DataCr;
            break;
        }
        case State::DataCr:
            if (p[i] == '\r') {
                m_state = State::DataLf;
            } else if (p[i] == '\n') {
                m_state = State::Size;
                m_sizeDigits = 0;
            } else {
                return failAt("chunk data longer than its size");
            }
            ++i;
            break;
        case State::DataLf:
            if (p[i] != '\n')
                return failAt("chunk data longer than its size");
            ++i;
            m_state = State::Size;
            m_sizeDigits = 0;
            break;
        case State::Trailer: {
            const char c = p[i++];
            if (c == '\r') {
                m_state = State::TrailerLf;
            } else if (c == '\n') {
                if (endOfTrailerLine()) {
                    step.consumed = i;
                    step.done = true;
                    return step;
                }
            } else if (isForbiddenInHead(c)) {
                --i;
                return failAt("control character in trailer");
            } else if (++m_trailerLineLength > kMaxLineLength
                       || (m_trailerBytes += 1) > kMaxTrailerBytes) {
                --i;
                return failAt("trailer section too large");
            }
            break;
        }
        case State::TrailerLf:
            if (p[i] != '\n')
                return failAt("bare CR in trailer");
            ++i;
            if (endOfTrailerLine()) {
                step.consumed = i;
                step.done = true;
                return step;
            }
            break;
        case State::Done:
        case State::Failed:
            Q_UNREACHABLE();
        }
    }
    step.consumed = i;
    return step;
}

// ---- Writing ----------------------------------------------------------------------------------

namespace {
void appendHeaders(QByteArray &out, const Headers &headers)
{
    for (const Header &h : headers.list()) {
        out += h.name;
        out += ": ";
        out += h.value;
        out += "\r\n";
    }
    out += "\r\n";
}

qsizetype headersSize(const Headers &headers)
{
    qsizetype n = 2;
    for (const Header &h : headers.list())
        n += h.name.size() + h.value.size() + 4;
    return n;
}
} // namespace

QByteArray serialize(const RequestHead &head)
{
    QByteArray out;
    out.reserve(head.method.size() + head.target.size() + 12 + headersSize(head.headers));
    out += head.method;
    out += ' ';
    out += head.target;
    out += " HTTP/1.";
    out += char('0' + qBound(0, head.versionMinor, 9));
    out += "\r\n";
    appendHeaders(out, head.headers);
    return out;
}

QByteArray serialize(const ResponseHead &head)
{
    const QByteArray reason = head.reason.isEmpty() ? reasonPhrase(head.status) : head.reason;
    QByteArray out;
    out.reserve(reason.size() + 16 + headersSize(head.headers));
    out += "HTTP/1.";
    out += char('0' + qBound(0, head.versionMinor, 9));
    out += ' ';
    out += QByteArray::number(qBound(100, head.status, 999));
    out += ' ';
    out += reason;
    out += "\r\n";
    appendHeaders(out, head.headers);
    return out;
}

QByteArray reasonPhrase(int status)
{
    switch (status) {
    case 100: return QByteArrayLiteral("Continue");
    case 101: return QByteArrayLiteral("Switching Protocols");
    case 200: return QByteArrayLiteral("OK");
    case 201: return QByteArrayLiteral("Created");
    case 202: return QByteArrayLiteral("Accepted");
    case 204: return QByteArrayLiteral("No Content");
    case 206: return QByteArrayLiteral("Partial Content");
    case 301: return QByteArrayLiteral("Moved Permanently");
    case 302: return QByteArrayLiteral("Found");
    case 304: return QByteArrayLiteral("Not Modified");
    case 307: return QByteArrayLiteral("Temporary Redirect");
    case 308: return QByteArrayLiteral("Permanent Redirect");
    case 400: return QByteArrayLiteral("Bad Request");
    case 401: return QByteArrayLiteral("Unauthorized");
    case 403: return QByteArrayLiteral("Forbidden");
    case 404: return QByteArrayLiteral("Not Found");
    case 405: return QByteArrayLiteral("Method Not Allowed");
    case 408: return QByteArrayLiteral("Request Timeout");
    case 409: return QByteArrayLiteral("Conflict");
    case 411: return QByteArrayLiteral("Length Required");
    case 413: return QByteArrayLiteral("Content Too Large");
    case 414: return QByteArrayLiteral("URI Too Long");
    case 415: return QByteArrayLiteral("Unsupported Media Type");
    case 417: return QByteArrayLiteral("Expectation Failed");
    case 422: return QByteArrayLiteral("Unprocessable Content");
    case 429: return QByteArrayLiteral("Too Many Requests");
    case 431: return QByteArrayLiteral("Request Header Fields Too Large");
    case 499: return QByteArrayLiteral("Client Closed Request");
    case 500: return QByteArrayLiteral("Internal Server Error");
    case 501: return QByteArrayLiteral("Not Implemented");
    case 502: return QByteArrayLiteral("Bad Gateway");
    case 503: return QByteArrayLiteral("Service Unavailable");
    case 504: return QByteArrayLiteral("Gateway Timeout");
    case 505: return QByteArrayLiteral("HTTP Version Not Supported");
    default: break;
    }
    return {};
}

QByteArray encodeChunk(QByteArrayView payload)
{
    if (payload.isEmpty())
        return {};
    QByteArray out;
    out.reserve(payload.size() + 20);
    out += QByteArray::number(qulonglong(payload.size()), 16);
    out += "\r\n";
    out.append(payload.data(), payload.size());
    out += "\r\n";
    return out;
}

} // namespace slullama::http
