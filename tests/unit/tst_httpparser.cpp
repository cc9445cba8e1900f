#include "httpparser.h"

#include <QTest>

using namespace slullama::http;

Q_DECLARE_METATYPE(slullama::http::ParseState)

namespace {

QByteArray big(qsizetype n, char c = 'a')
{
    return QByteArray(n, c);
}

QByteArray manyHeaders(int count)
{
    QByteArray out;
    for (int i = 0; i < count; ++i)
        out += "X-H" + QByteArray::number(i) + ": v\r\n";
    return out;
}

// Decodes `input` fed in pieces of `step` bytes (0 = all at once); returns payload and state.
struct Decoded
{
    QByteArray payload;
    qsizetype consumed = 0;
    bool done = false;
    bool error = false;
};

Decoded decode(const QByteArray &input, qsizetype step, qint64 maxChunk = qint64(1) << 40)
{
    ChunkedDecoder decoder(maxChunk);
    Decoded d;
    qsizetype pos = 0;
    while (pos < input.size()) {
        const qsizetype len = step == 0 ? input.size() - pos : qMin(step, input.size() - pos);
        const ChunkedDecoder::Step s = decoder.feed(QByteArrayView(input).sliced(pos, len),
                                                    &d.payload);
        d.consumed += s.consumed;
        if (s.error) {
            d.error = true;
            return d;
        }
        if (s.done) {
            d.done = true;
            return d;
        }
        if (s.consumed != len)  // the decoder must take all it is given until done/error
            return d;
        pos += len;
    }
    return d;
}

} // namespace

class TestHttpParser final : public QObject
{
    Q_OBJECT

private slots:
    void parseRequest_data();
    void parseRequest();
    void requestSplitAtEveryOffset_data() { parseRequest_data(); }
    void requestSplitAtEveryOffset();
    void requestLimits_data();
    void requestLimits();
    void binaryGarbageFailsEarly();
    void requireHostOff();

    void parseResponse_data();
    void parseResponse();
    void responseSplitAtEveryOffset_data() { parseResponse_data(); }
    void responseSplitAtEveryOffset();

    void requestFraming_data();
    void requestFraming();
    void responseFraming_data();
    void responseFraming();

    void chunked_data();
    void chunked();
    void chunkedSplitAtEveryOffset_data() { chunked_data(); }
    void chunkedSplitAtEveryOffset();
    void chunkedAfterDoneOrError();
    void chunkedWithoutOutput();
    void chunkedLargeBody();

    void headers();
    void keepAlive_data();
    void keepAlive();
    void serializeRoundTrip();
    void serializeResponse();
    void reasonPhrases_data();
    void reasonPhrases();
    void encodeChunks();
};

// ---- requests ---------------------------------------------------------------------------------

void TestHttpParser::parseRequest_data()
{
    QTest::addColumn<QByteArray>("input");
    QTest::addColumn<ParseState>("state");
    QTest::addColumn<int>("errorStatus");
    QTest::addColumn<QByteArray>("method");
    QTest::addColumn<QByteArray>("path");
    QTest::addColumn<QByteArray>("query");
    QTest::addColumn<int>("minor");
    QTest::addColumn<int>("headerCount");
    QTest::addColumn<qsizetype>("consumed");

    const auto C = ParseState::Complete;
    const auto I = ParseState::Incomplete;
    const QByteArray h = "Host: x\r\n";

    // good
    QTest::newRow("simple") << QByteArray("GET / HTTP/1.1\r\nHost: x\r\n\r\n") << C << 0
                            << QByteArray("GET") << QByteArray("/") << QByteArray() << 1 << 1
                            << qsizetype(27);
    QTest::newRow("lf-only") << QByteArray("GET /api/tags HTTP/1.1\nHost: x\n\n") << C << 0
                             << QByteArray("GET") << QByteArray("/api/tags") << QByteArray() << 1
                             << 1 << qsizetype(32);
    QTest::newRow("mixed-line-ends") << QByteArray("GET / HTTP/1.1\r\nHost: x\n\r\n") << C << 0
                                     << QByteArray("GET") << QByteArray("/") << QByteArray() << 1
                                     << 1 << qsizetype(26);
    QTest::newRow("query") << QByteArray("GET /standin/bytes?n=10&x HTTP/1.1\r\n" + h + "\r\n")
                           << C << 0 << QByteArray("GET") << QByteArray("/standin/bytes")
                           << QByteArray("n=10&x") << 1 << 1 << qsizetype(47);
    QTest::newRow("empty-query") << QByteArray("GET /a? HTTP/1.1\r\n" + h + "\r\n") << C << 0
                                 << QByteArray("GET") << QByteArray("/a") << QByteArray() << 1
                                 << 1 << qsizetype(29);
    QTest::newRow("http10-no-host") << QByteArray("GET /x HTTP/1.0\r\n\r\n") << C << 0
                                    << QByteArray("GET") << QByteArray("/x") << QByteArray() << 0
                                    << 0 << qsizetype(19);
    QTest::newRow("http19") << QByteArray("GET / HTTP/1.9\r\n" + h + "\r\n") << C << 0
                            << QByteArray("GET") << QByteArray("/") << QByteArray() << 9 << 1
                            << qsizetype(27);
    QTest::newRow("absolute-form")
        << QByteArray("POST http://head:11435/api/chat?a=b HTTP/1.1\r\n" + h + "\r\n") << C << 0
        << QByteArray("POST") << QByteArray("/api/chat") << QByteArray("a=b") << 1 << 1
        << qsizetype(57);
    QTest::newRow("absolute-form-no-path")
        << QByteArray("GET HTTP://head:11435 HTTP/1.1\r\n" + h + "\r\n") << C << 0
        << QByteArray("GET") << QByteArray("/") << QByteArray() << 1 << 1 << qsizetype(43);
    QTest::newRow("asterisk") << QByteArray("OPTIONS * HTTP/1.1\r\n" + h + "\r\n") << C << 0
                              << QByteArray("OPTIONS") << QByteArray("*") << QByteArray() << 1
                              << 1 << qsizetype(31);
    QTest::newRow("leading-empty-lines")
        << QByteArray("\r\n\nGET / HTTP/1.1\r\n" + h + "\r\n") << C << 0 << QByteArray("GET")
        << QByteArray("/") << QByteArray() << 1 << 1 << qsizetype(30);
    QTest::newRow("ows-and-empty-values")
        << QByteArray("GET / HTTP/1.1\r\nHost:\t x \t\r\nX-Empty:\r\nX-Sp:   \r\n\r\n") << C << 0
        << QByteArray("GET") << QByteArray("/") << QByteArray() << 1 << 3 << qsizetype(50);
    QTest::newRow("obs-text-value")
        << QByteArray("GET / HTTP/1.1\r\n" + h + "X-U: caf\xc3\xa9\r\n\r\n") << C << 0
        << QByteArray("GET") << QByteArray("/") << QByteArray() << 1 << 2 << qsizetype(39);
    QTest::newRow("body-follows")
        << QByteArray("POST /api/chat HTTP/1.1\r\n" + h + "Content-Length: 2\r\n\r\n{}") << C
        << 0 << QByteArray("POST") << QByteArray("/api/chat") << QByteArray() << 1 << 2
        << qsizetype(55);
    QTest::newRow("pipelined")
        << QByteArray("GET /a HTTP/1.1\r\n" + h + "\r\nGET /b HTTP/1.1\r\n" + h + "\r\n") << C
        << 0 << QByteArray("GET") << QByteArray("/a") << QByteArray() << 1 << 1 << qsizetype(28);
    QTest::newRow("chunked-request")
        << QByteArray("POST /api/chat HTTP/1.1\r\n" + h + "Transfer-Encoding: chunked\r\n\r\n")
        << C << 0 << QByteArray("POST") << QByteArray("/api/chat") << QByteArray() << 1 << 2
        << qsizetype(64);
    QTest::newRow("same-content-length-twice")
        << QByteArray("POST / HTTP/1.1\r\n" + h + "Content-Length: 5, 5\r\nContent-length: 5\r\n\r\n")
        << C << 0 << QByteArray("POST") << QByteArray("/") << QByteArray() << 1 << 3
        << qsizetype(69);
    QTest::newRow("utf8-target") << QByteArray("GET /caf\xc3\xa9 HTTP/1.1\r\n" + h + "\r\n") << C
                                 << 0 << QByteArray("GET") << QByteArray("/caf\xc3\xa9")
                                 << QByteArray() << 1 << 1 << qsizetype(32);

    // incomplete
    QTest::newRow("empty") << QByteArray() << I << 0 << QByteArray() << QByteArray()
                           << QByteArray() << 1 << 0 << qsizetype(0);
    QTest::newRow("no-final-line") << QByteArray("GET / HTTP/1.1\r\nHost: x\r\n") << I << 0
                                   << QByteArray() << QByteArray() << QByteArray() << 1 << 0
                                   << qsizetype(0);
    QTest::newRow("final-cr-only") << QByteArray("GET / HTTP/1.1\r\nHost: x\r\n\r") << I << 0
                                   << QByteArray() << QByteArray() << QByteArray() << 1 << 0
                                   << qsizetype(0);

    // errors
    auto bad = [](const char *name, const QByteArray &input, int status) {
        QTest::newRow(name) << input << ParseState::Error << status << QByteArray()
                            << QByteArray() << QByteArray() << 1 << 0 << qsizetype(0);
    };
    bad("space-before-colon", "GET / HTTP/1.1\r\nHost : x\r\n\r\n", 400);
    bad("obs-fold", "GET / HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n", 400);
    bad("obs-fold-tab", "GET / HTTP/1.1\r\nHost: x\r\nX-A: a\r\n\tb\r\n\r\n", 400);
    bad("nul-in-value", QByteArray("GET / HTTP/1.1\r\nHost: x\r\nX-A: a\0b\r\n\r\n", 37), 400);
    bad("ctl-in-value", "GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x01" "b\r\n\r\n", 400);
    bad("del-in-value", "GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x7f\r\n\r\n", 400);
    bad("bare-cr-in-value", "GET / HTTP/1.1\r\nHost: x\r\nX-A: a\rb\r\n\r\n", 400);
    bad("bare-cr-line-end", "GET / HTTP/1.1\rHost: x\r\n\r\n", 400);
    bad("no-colon", "GET / HTTP/1.1\r\nHost: x\r\nNoColon\r\n\r\n", 400);
    bad("empty-name", "GET / HTTP/1.1\r\nHost: x\r\n: v\r\n\r\n", 400);
    bad("bad-name-char", "GET / HTTP/1.1\r\nHost: x\r\nX(A): v\r\n\r\n", 400);
    bad("space-in-name", "GET / HTTP/1.1\r\nHost: x\r\nX A: v\r\n\r\n", 400);
    bad("double-space", "GET  / HTTP/1.1\r\nHost: x\r\n\r\n", 400);
    bad("trailing-space", "GET / HTTP/1.1 \r\nHost: x\r\n\r\n", 400);
    bad("space-in-target", "GET /a b HTTP/1.1\r\nHost: x\r\n\r\n", 400);
    bad("tab-separator", "GET\t/ HTTP/1.1\r\nHost: x\r\n\r\n", 400);
    bad("fragment", "GET /a#b HTTP/1.1\r\nHost: x\r\n\r\n", 400);
    // Regression (tests/fuzz/fuzz_requesthead): routed as "/" but forwarded as sent.
    bad("query-only-target", "GET ?x HTTP/1.1\r\nHost: x\r\n\r\n", 400);
    bad("relative-target", "GET api/tags HTTP/1.1\r\nHost: x\r\n\r\n", 400);
    bad("http09", "GET /\r\n\r\n", 400);
    bad("lowercase-version", "GET / http/1.1\r\nHost: x\r\n\r\n", 400);
    bad("version-two-digits", "GET / HTTP/1.10\r\nHost: x\r\n\r\n", 400);
    bad("version-garbage", "GET / HTTP/x.y\r\nHost: x\r\n\r\n", 400);
    bad("bad-method", "G(T / HTTP/1.1\r\nHost: x\r\n\r\n", 400);
    bad("empty-method", " / HTTP/1.1\r\nHost: x\r\n\r\n", 400);
    bad("http2", "GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505);
    bad("http3", "GET / HTTP/3.0\r\nHost: x\r\n\r\n", 505);
    bad("http0", "GET / HTTP/0.9\r\nHost: x\r\n\r\n", 505);
    bad("no-host", "GET / HTTP/1.1\r\nAccept: */*\r\n\r\n", 400);
    bad("two-hosts", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400);
    bad("te-gzip", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 501);
    bad("te-gzip-chunked", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
        501);
    bad("te-chunked-twice",
        "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
        400);
    bad("te-and-cl",
        "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
        400);
    bad("te-in-http10", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400);
    bad("te-empty", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: \r\n\r\n", 400);
    bad("cl-not-number", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n", 400);
    bad("cl-negative", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", 400);
    bad("cl-plus", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +1\r\n\r\n", 400);
    bad("cl-empty", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length:\r\n\r\n", 400);
    bad("cl-list-differs", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 6\r\n\r\n", 400);
    bad("cl-lines-differ",
        "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", 400);
    bad("cl-overflow",
        "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999999\r\n\r\n", 400);
    bad("request-line-too-long",
        "GET /" + big(20000) + " HTTP/1.1\r\nHost: x\r\n\r\n", 414);
    bad("header-line-too-long", "GET / HTTP/1.1\r\nHost: x\r\nX-A: " + big(20000) + "\r\n\r\n",
        431);
    bad("too-many-headers", "GET / HTTP/1.1\r\nHost: x\r\n" + manyHeaders(200) + "\r\n", 431);
    bad("head-too-big",
        "GET / HTTP/1.1\r\nHost: x\r\n" + QByteArray("X-Big: " + big(10000) + "\r\n").repeated(8) + "\r\n",
        431);
}

void TestHttpParser::parseRequest()
{
    QFETCH(QByteArray, input);
    QFETCH(ParseState, state);
    QFETCH(int, errorStatus);

    const auto r = parseRequestHead(input);
    QCOMPARE(r.state, state);
    if (state == ParseState::Error) {
        QCOMPARE(r.errorStatus, errorStatus);
        QVERIFY(!r.error.isEmpty());
        return;
    }
    if (state != ParseState::Complete)
        return;
    QFETCH(QByteArray, method);
    QFETCH(QByteArray, path);
    QFETCH(QByteArray, query);
    QFETCH(int, minor);
    QFETCH(int, headerCount);
    QFETCH(qsizetype, consumed);
    QCOMPARE(r.head.method, method);
    QCOMPARE(r.head.path, path);
    QCOMPARE(r.head.query, query);
    QCOMPARE(r.head.versionMinor, minor);
    QCOMPARE(r.head.headers.size(), headerCount);
    QCOMPARE(r.consumed, consumed);
    QCOMPARE(r.errorStatus, 0);
}

void TestHttpParser::requestSplitAtEveryOffset()
{
    QFETCH(QByteArray, input);
    QFETCH(ParseState, state);
    QFETCH(int, errorStatus);
    QFETCH(qsizetype, consumed);

    // The input as it arrives a byte at a time: no prefix may complete early, and an error seen
    // on a prefix must stay an error (with the same answer) once the rest arrives.
    const qsizetype end = state == ParseState::Complete ? consumed : input.size();
    int firstError = 0;
    // Every offset for ordinary heads; a stride through the 20 KB ones keeps this quadratic
    // check fast.
    for (qsizetype k = 0; k < end; k += (k < 1024 ? 1 : 61)) {
        const auto r = parseRequestHead(QByteArrayView(input).first(k));
        QVERIFY2(r.state != ParseState::Complete, QByteArray::number(k).constData());
        if (r.state == ParseState::Error) {
            QVERIFY2(state == ParseState::Error, QByteArray::number(k).constData());
            if (firstError == 0)
                firstError = r.errorStatus;
            QCOMPARE(r.errorStatus, errorStatus);
        }
    }
    const auto full = parseRequestHead(QByteArrayView(input).first(end));
    QCOMPARE(full.state, state);
}

void TestHttpParser::requestLimits_data()
{
    QTest::addColumn<int>("maxHead");
    QTest::addColumn<int>("maxLine");
    QTest::addColumn<int>("maxCount");
    QTest::addColumn<QByteArray>("input");
    QTest::addColumn<int>("errorStatus");  // 0 = Complete

    const QByteArray req = "GET /abcdefghij HTTP/1.1\r\nHost: x\r\nA: 1\r\nB: 2\r\n\r\n";
    QTest::newRow("fits") << 100 << 30 << 3 << req << 0;
    QTest::newRow("head-exactly-at-limit") << int(req.size()) << 30 << 3 << req << 0;
    QTest::newRow("head-one-over") << int(req.size() - 1) << 30 << 3 << req << 431;
    QTest::newRow("count-at-limit") << 100 << 30 << 3 << req << 0;
    QTest::newRow("count-over") << 100 << 30 << 2 << req << 431;
    QTest::newRow("line-at-limit") << 100 << 24 << 3 << req << 0;
    QTest::newRow("request-line-over") << 100 << 23 << 3 << req << 414;
    QTest::newRow("header-line-over")
        << 100 << 14 << 3 << QByteArray("GET / HTTP/1.1\r\nHost: x\r\nX-Long: 1234567\r\n\r\n")
        << 431;
}

void TestHttpParser::requestLimits()
{
    QFETCH(int, maxHead);
    QFETCH(int, maxLine);
    QFETCH(int, maxCount);
    QFETCH(QByteArray, input);
    QFETCH(int, errorStatus);

    Limits limits;
    limits.maxHeadBytes = maxHead;
    limits.maxLineLength = maxLine;
    limits.maxHeaderCount = maxCount;
    const auto r = parseRequestHead(input, limits);
    if (errorStatus == 0) {
        QCOMPARE(r.state, ParseState::Complete);
    } else {
        QCOMPARE(r.state, ParseState::Error);
        QCOMPARE(r.errorStatus, errorStatus);
    }
    // Limits hold for incomplete input too: a slow sender cannot make us buffer past them.
    if (QByteArrayView(QTest::currentDataTag()) == "head-one-over")
        return;  // the cut-off input fits
    const auto partial = parseRequestHead(QByteArrayView(input).first(input.size() - 2), limits);
    QCOMPARE(partial.state, errorStatus == 0 ? ParseState::Incomplete : ParseState::Error);
}

void TestHttpParser::binaryGarbageFailsEarly()
{
    // A TLS ClientHello sent to the plain HTTP port: answered at once, not after a limit.
    const QByteArray hello("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 11);
    const auto r = parseRequestHead(hello);
    QCOMPARE(r.state, ParseState::Error);
    QCOMPARE(r.errorStatus, 400);

    const auto r2 = parseRequestHead(QByteArray("GET /\x01"));
    QCOMPARE(r2.state, ParseState::Error);
}

void TestHttpParser::requireHostOff()
{
    Limits limits;
    limits.requireHost = false;
    QCOMPARE(parseRequestHead("GET / HTTP/1.1\r\n\r\n", limits).state, ParseState::Complete);
    QCOMPARE(parseRequestHead("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", limits).state,
             ParseState::Error);
    QCOMPARE(parseRequestHead("GET / HTTP/1.1\r\n\r\n").state, ParseState::Error);
}

// ---- responses --------------------------------------------------------------------------------

void TestHttpParser::parseResponse_data()
{
    QTest::addColumn<QByteArray>("input");
    QTest::addColumn<ParseState>("state");
    QTest::addColumn<int>("status");
    QTest::addColumn<QByteArray>("reason");
    QTest::addColumn<int>("minor");
    QTest::addColumn<qsizetype>("consumed");

    const auto C = ParseState::Complete;
    const auto E = ParseState::Error;
    QTest::newRow("ok") << QByteArray("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}") << C << 200
                        << QByteArray("OK") << 1 << qsizetype(38);
    QTest::newRow("http10") << QByteArray("HTTP/1.0 404 Not Found\r\n\r\n") << C << 404
                            << QByteArray("Not Found") << 0 << qsizetype(26);
    QTest::newRow("empty-reason") << QByteArray("HTTP/1.1 204 \r\n\r\n") << C << 204 << QByteArray()
                                  << 1 << qsizetype(17);
    QTest::newRow("no-reason-no-space") << QByteArray("HTTP/1.1 204\r\n\r\n") << C << 204
                                        << QByteArray() << 1 << qsizetype(16);
    QTest::newRow("lf-only") << QByteArray("HTTP/1.1 200 OK\nA: b\n\n") << C << 200
                             << QByteArray("OK") << 1 << qsizetype(22);
    QTest::newRow("reason-with-spaces") << QByteArray("HTTP/1.1 500 It Broke\r\n\r\n") << C << 500
                                        << QByteArray("It Broke") << 1 << qsizetype(25);
    QTest::newRow("incomplete") << QByteArray("HTTP/1.1 200 OK\r\n") << ParseState::Incomplete
                                << 0 << QByteArray() << 1 << qsizetype(0);
    QTest::newRow("http2") << QByteArray("HTTP/2.0 200 OK\r\n\r\n") << E << 0 << QByteArray() << 1
                           << qsizetype(0);
    QTest::newRow("short-code") << QByteArray("HTTP/1.1 20 OK\r\n\r\n") << E << 0 << QByteArray()
                                << 1 << qsizetype(0);
    QTest::newRow("code-letters") << QByteArray("HTTP/1.1 2x0 OK\r\n\r\n") << E << 0
                                  << QByteArray() << 1 << qsizetype(0);
    QTest::newRow("code-too-small") << QByteArray("HTTP/1.1 099 OK\r\n\r\n") << E << 0
                                    << QByteArray() << 1 << qsizetype(0);
    QTest::newRow("code-glued") << QByteArray("HTTP/1.1 2000 OK\r\n\r\n") << E << 0
                                << QByteArray() << 1 << qsizetype(0);
    QTest::newRow("not-http") << QByteArray("SSH-2.0-OpenSSH_9.2\r\n\r\n") << E << 0
                              << QByteArray() << 1 << qsizetype(0);
    QTest::newRow("obs-fold") << QByteArray("HTTP/1.1 200 OK\r\nA: b\r\n c\r\n\r\n") << E << 0
                              << QByteArray() << 1 << qsizetype(0);
    QTest::newRow("bad-header") << QByteArray("HTTP/1.1 200 OK\r\nA b\r\n\r\n") << E << 0
                                << QByteArray() << 1 << qsizetype(0);
}

void TestHttpParser::parseResponse()
{
    QFETCH(QByteArray, input);
    QFETCH(ParseState, state);
    const auto r = parseResponseHead(input);
    QCOMPARE(r.state, state);
    if (state == ParseState::Error) {
        QCOMPARE(r.errorStatus, 502);  // what a proxy answers its own client
        return;
    }
    if (state != ParseState::Complete)
        return;
    QFETCH(int, status);
    QFETCH(QByteArray, reason);
    QFETCH(int, minor);
    QFETCH(qsizetype, consumed);
    QCOMPARE(r.head.status, status);
    QCOMPARE(r.head.reason, reason);
    QCOMPARE(r.head.versionMinor, minor);
    QCOMPARE(r.consumed, consumed);
}

void TestHttpParser::responseSplitAtEveryOffset()
{
    QFETCH(QByteArray, input);
    QFETCH(ParseState, state);
    QFETCH(qsizetype, consumed);
    const qsizetype end = state == ParseState::Complete ? consumed : input.size();
    for (qsizetype k = 0; k < end; ++k) {
        const auto r = parseResponseHead(QByteArrayView(input).first(k));
        QVERIFY2(r.state != ParseState::Complete, QByteArray::number(k).constData());
        if (r.state == ParseState::Error)
            QCOMPARE(state, ParseState::Error);
    }
    QCOMPARE(parseResponseHead(QByteArrayView(input).first(end)).state, state);
}

// ---- framing ----------------------------------------------------------------------------------

namespace {
Headers headersFrom(const QByteArrayList &lines)
{
    Headers h;
    for (const QByteArray &line : lines) {
        const qsizetype colon = line.indexOf(':');
        h.add(line.left(colon), line.mid(colon + 1).trimmed());
    }
    return h;
}
} // namespace

void TestHttpParser::requestFraming_data()
{
    QTest::addColumn<int>("minor");
    QTest::addColumn<QByteArrayList>("headers");
    QTest::addColumn<int>("kind");
    QTest::addColumn<qint64>("length");
    QTest::addColumn<int>("errorStatus");

    QTest::newRow("none") << 1 << QByteArrayList{} << int(BodyFraming::None) << qint64(0) << 0;
    QTest::newRow("length") << 1 << QByteArrayList{"Content-Length: 42"}
                            << int(BodyFraming::Length) << qint64(42) << 0;
    QTest::newRow("length-zero") << 1 << QByteArrayList{"content-length: 0"}
                                 << int(BodyFraming::Length) << qint64(0) << 0;
    QTest::newRow("length-repeated-same")
        << 1 << QByteArrayList{"Content-Length: 7", "CONTENT-LENGTH: 7, 7"}
        << int(BodyFraming::Length) << qint64(7) << 0;
    QTest::newRow("length-big") << 1 << QByteArrayList{"Content-Length: 10000000000"}
                                << int(BodyFraming::Length) << qint64(10000000000) << 0;
    QTest::newRow("chunked") << 1 << QByteArrayList{"Transfer-Encoding: chunked"}
                             << int(BodyFraming::Chunked) << qint64(0) << 0;
    QTest::newRow("chunked-case") << 1 << QByteArrayList{"transfer-encoding: CHUNKED"}
                                  << int(BodyFraming::Chunked) << qint64(0) << 0;
    QTest::newRow("te-and-cl") << 1
                               << QByteArrayList{"Transfer-Encoding: chunked", "Content-Length: 3"}
                               << int(BodyFraming::Invalid) << qint64(0) << 400;
    QTest::newRow("te-unknown") << 1 << QByteArrayList{"Transfer-Encoding: br"}
                                << int(BodyFraming::Invalid) << qint64(0) << 501;
    QTest::newRow("te-chunked-not-last") << 1 << QByteArrayList{"Transfer-Encoding: chunked, gzip"}
                                         << int(BodyFraming::Invalid) << qint64(0) << 501;
    QTest::newRow("te-http10") << 0 << QByteArrayList{"Transfer-Encoding: chunked"}
                               << int(BodyFraming::Invalid) << qint64(0) << 400;
    QTest::newRow("cl-differs") << 1 << QByteArrayList{"Content-Length: 1", "Content-Length: 2"}
                                << int(BodyFraming::Invalid) << qint64(0) << 400;
    QTest::newRow("cl-hex") << 1 << QByteArrayList{"Content-Length: 0x10"}
                            << int(BodyFraming::Invalid) << qint64(0) << 400;
}

void TestHttpParser::requestFraming()
{
    QFETCH(int, minor);
    QFETCH(QByteArrayList, headers);
    QFETCH(int, kind);
    QFETCH(qint64, length);
    QFETCH(int, errorStatus);

    RequestHead head;
    head.method = "POST";
    head.versionMinor = minor;
    head.headers = headersFrom(headers);
    const BodyFraming f = requestBodyFraming(head);
    QCOMPARE(int(f.kind), kind);
    if (kind == BodyFraming::Length)
        QCOMPARE(f.length, length);
    if (kind == BodyFraming::Invalid) {
        QCOMPARE(f.errorStatus, errorStatus);
        QVERIFY(!f.error.isEmpty());
    }
}

void TestHttpParser::responseFraming_data()
{
    QTest::addColumn<QByteArray>("method");
    QTest::addColumn<int>("status");
    QTest::addColumn<QByteArrayList>("headers");
    QTest::addColumn<int>("kind");
    QTest::addColumn<qint64>("length");

    const QByteArrayList cl{"Content-Length: 10"};
    const QByteArrayList te{"Transfer-Encoding: chunked"};
    QTest::newRow("length") << QByteArray("GET") << 200 << cl << int(BodyFraming::Length)
                            << qint64(10);
    QTest::newRow("chunked") << QByteArray("POST") << 200 << te << int(BodyFraming::Chunked)
                             << qint64(0);
    QTest::newRow("te-wins-over-cl")
        << QByteArray("POST") << 200
        << QByteArrayList{"Content-Length: 10", "Transfer-Encoding: chunked"}
        << int(BodyFraming::Chunked) << qint64(0);
    QTest::newRow("te-not-chunked") << QByteArray("GET") << 200
                                    << QByteArrayList{"Transfer-Encoding: gzip"}
                                    << int(BodyFraming::UntilClose) << qint64(0);
    QTest::newRow("gzip-then-chunked") << QByteArray("GET") << 200
                                       << QByteArrayList{"Transfer-Encoding: gzip, chunked"}
                                       << int(BodyFraming::Chunked) << qint64(0);
    QTest::newRow("nothing") << QByteArray("GET") << 200 << QByteArrayList{}
                             << int(BodyFraming::UntilClose) << qint64(0);
    QTest::newRow("head") << QByteArray("HEAD") << 200 << cl << int(BodyFraming::None)
                          << qint64(0);
    QTest::newRow("head-chunked") << QByteArray("HEAD") << 200 << te << int(BodyFraming::None)
                                  << qint64(0);
    QTest::newRow("100") << QByteArray("POST") << 100 << QByteArrayList{}
                         << int(BodyFraming::None) << qint64(0);
    QTest::newRow("101") << QByteArray("GET") << 101 << QByteArrayList{}
                         << int(BodyFraming::None) << qint64(0);
    QTest::newRow("204") << QByteArray("DELETE") << 204 << cl << int(BodyFraming::None)
                         << qint64(0);
    QTest::newRow("304") << QByteArray("GET") << 304 << cl << int(BodyFraming::None) << qint64(0);
    QTest::newRow("connect-2xx") << QByteArray("CONNECT") << 200 << QByteArrayList{}
                                 << int(BodyFraming::UntilClose) << qint64(0);
    QTest::newRow("bad-cl") << QByteArray("GET") << 200 << QByteArrayList{"Content-Length: x"}
                            << int(BodyFraming::Invalid) << qint64(0);
    QTest::newRow("cl-differs") << QByteArray("GET") << 200
                                << QByteArrayList{"Content-Length: 1", "Content-Length: 2"}
                                << int(BodyFraming::Invalid) << qint64(0);
}

void TestHttpParser::responseFraming()
{
    QFETCH(QByteArray, method);
    QFETCH(int, status);
    QFETCH(QByteArrayList, headers);
    QFETCH(int, kind);
    QFETCH(qint64, length);

    ResponseHead head;
    head.status = status;
    head.headers = headersFrom(headers);
    const BodyFraming f = responseBodyFraming(method, head);
    QCOMPARE(int(f.kind), kind);
    if (kind == BodyFraming::Length)
        QCOMPARE(f.length, length);
    if (kind == BodyFraming::Invalid)
        QCOMPARE(f.errorStatus, 502);
}

// ---- chunked ----------------------------------------------------------------------------------

void TestHttpParser::chunked_data()
{
    QTest::addColumn<QByteArray>("input");
    QTest::addColumn<QByteArray>("payload");
    QTest::addColumn<bool>("done");
    QTest::addColumn<bool>("error");
    QTest::addColumn<qsizetype>("consumed");  // when done
    QTest::addColumn<qint64>("maxChunk");

    const qint64 dflt = qint64(1) << 40;
    auto ok = [&](const char *name, const QByteArray &in, const QByteArray &payload,
                  qsizetype consumed) {
        QTest::newRow(name) << in << payload << true << false << consumed << dflt;
    };
    auto bad = [&](const char *name, const QByteArray &in, qint64 maxChunk = qint64(1) << 40) {
        QTest::newRow(name) << in << QByteArray() << false << true << qsizetype(0) << maxChunk;
    };

    ok("single", "5\r\nhello\r\n0\r\n\r\n", "hello", 15);
    ok("empty-body", "0\r\n\r\n", "", 5);
    ok("two-chunks", "3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n", "abcde", 20);
    ok("hex-upper-lower", "A\r\n0123456789\r\na\r\n0123456789\r\n0\r\n\r\n",
       "01234567890123456789", 35);
    ok("leading-zeros", "0005\r\nhello\r\n000\r\n\r\n", "hello", 20);
    ok("extensions", "5;name=value;x=\"q;s\"\r\nhello\r\n0;last\r\n\r\n", "hello", 39);
    ok("bws-before-ext", "5 ;a=b\r\nhello\r\n0\r\n\r\n", "hello", 20);
    ok("trailers", "5\r\nhello\r\n0\r\nX-A: 1\r\nX-B: 2\r\n\r\n", "hello", 31);
    ok("lf-only", "5\nhello\n0\n\n", "hello", 11);
    ok("lf-trailer", "5\nhello\n0\nX-A: 1\n\n", "hello", 18);
    ok("data-with-crlf-inside", "4\r\n\r\n\r\n\r\n0\r\n\r\n", "\r\n\r\n", 14);
    ok("stops-at-end", "2\r\nhi\r\n0\r\n\r\nGET / HTTP/1.1\r\n", "hi", 12);
    ok("at-max-chunk", "10\r\n0123456789abcdef\r\n0\r\n\r\n", "0123456789abcdef", 27);

    QTest::newRow("incomplete-size") << QByteArray("5") << QByteArray() << false << false
                                     << qsizetype(1) << dflt;
    QTest::newRow("incomplete-data") << QByteArray("5\r\nhel") << QByteArray("hel") << false
                                     << false << qsizetype(6) << dflt;
    QTest::newRow("incomplete-terminator") << QByteArray("5\r\nhello\r\n0\r\n") << QByteArray("hello")
                                           << false << false << qsizetype(13) << dflt;

    bad("not-hex", "xyz\r\n");
    bad("empty-size", "\r\nhello\r\n");
    bad("negative", "-1\r\n");
    bad("space-in-size", "1 2\r\nab\r\n");
    bad("data-too-long", "3\r\nabcd\r\n0\r\n\r\n");
    bad("data-no-crlf", "3\r\nabcX\r\n");
    bad("bare-cr-size", "3\rabc\r\n");
    bad("bare-cr-after-data", "3\r\nabc\rX");
    bad("bare-cr-trailer", "0\r\nX-A: 1\rX\r\n\r\n");
    bad("ctl-in-extension", "3;a\x01\r\nabc\r\n");
    bad("ctl-in-trailer", QByteArray("0\r\nX-A: \0\r\n\r\n", 12));
    bad("overflow", "FFFFFFFFFFFFFFFFFFFF\r\n");
    bad("overflow-int64", "8000000000000000\r\n");
    bad("over-max-chunk", "11\r\n0123456789abcdefg\r\n", 16);
    bad("extension-too-long", "1;" + QByteArray(20000, 'x') + "\r\n");
    bad("trailer-too-long", "0\r\nX: " + QByteArray(20000, 'x') + "\r\n\r\n");
    bad("trailers-too-many-bytes", "0\r\n" + QByteArray("X: " + QByteArray(1000, 'x') + "\r\n").repeated(100)
                                       + "\r\n");
}

void TestHttpParser::chunked()
{
    QFETCH(QByteArray, input);
    QFETCH(QByteArray, payload);
    QFETCH(bool, done);
    QFETCH(bool, error);
    QFETCH(qsizetype, consumed);
    QFETCH(qint64, maxChunk);

    // All at once and a byte at a time must agree.
    for (qsizetype step : {qsizetype(0), qsizetype(1), qsizetype(3)}) {
        const Decoded d = decode(input, step, maxChunk);
        QCOMPARE(d.error, error);
        QCOMPARE(d.done, done);
        if (!error) {
            QCOMPARE(d.payload, payload);
            QCOMPARE(d.consumed, consumed);
        }
    }
}

void TestHttpParser::chunkedSplitAtEveryOffset()
{
    QFETCH(QByteArray, input);
    QFETCH(QByteArray, payload);
    QFETCH(bool, done);
    QFETCH(bool, error);
    QFETCH(qsizetype, consumed);
    QFETCH(qint64, maxChunk);

    for (qsizetype split = 0; split <= input.size(); split += (split < 1024 ? 1 : 257)) {
        ChunkedDecoder decoder(maxChunk);
        QByteArray out;
        const auto s1 = decoder.feed(QByteArrayView(input).first(split), &out);
        bool gotDone = s1.done;
        bool gotError = s1.error;
        qsizetype total = s1.consumed;
        if (!gotDone && !gotError) {
            QCOMPARE(s1.consumed, split);
            const auto s2 = decoder.feed(QByteArrayView(input).sliced(split), &out);
            gotDone = s2.done;
            gotError = s2.error;
            total += s2.consumed;
        }
        QCOMPARE(gotError, error);
        QCOMPARE(gotDone, done);
        QCOMPARE(decoder.isDone(), done);
        QCOMPARE(decoder.hasFailed(), error);
        if (!error) {
            QCOMPARE(out, payload);
            QCOMPARE(total, consumed);
        }
    }
}

void TestHttpParser::chunkedAfterDoneOrError()
{
    ChunkedDecoder ok;
    auto s = ok.feed("0\r\n\r\nrest");
    QVERIFY(s.done);
    QCOMPARE(s.consumed, 5);
    s = ok.feed("1\r\na\r\n");
    QVERIFY(s.done);
    QCOMPARE(s.consumed, 0);

    ChunkedDecoder bad;
    s = bad.feed("zz");
    QVERIFY(s.error);
    QVERIFY(!s.errorText.isEmpty());
    QCOMPARE(s.consumed, 0);
    s = bad.feed("0\r\n\r\n");
    QVERIFY(s.error);
    QCOMPARE(s.consumed, 0);
}

void TestHttpParser::chunkedWithoutOutput()
{
    // A relay only needs to know where the body ends.
    const QByteArray body = encodeChunk("hello") + encodeChunk(" world") + lastChunk();
    ChunkedDecoder decoder;
    const auto s = decoder.feed(QByteArray(body + "NEXT"));
    QVERIFY(s.done);
    QCOMPARE(s.consumed, body.size());
}

void TestHttpParser::chunkedLargeBody()
{
    QByteArray expected;
    QByteArray wire;
    for (int i = 0; i < 200; ++i) {
        const QByteArray piece(i * 37 + 1, char('a' + i % 26));
        expected += piece;
        wire += encodeChunk(piece);
    }
    wire += lastChunk();
    for (qsizetype step : {qsizetype(0), qsizetype(1), qsizetype(7), qsizetype(4096)}) {
        const Decoded d = decode(wire, step);
        QVERIFY(d.done);
        QCOMPARE(d.payload, expected);
        QCOMPARE(d.consumed, wire.size());
    }
}

// ---- misc -------------------------------------------------------------------------------------

void TestHttpParser::headers()
{
    Headers h;
    h.add("Content-Type", "a");
    h.add("X-Multi", "1");
    h.add("x-multi", "2");
    QCOMPARE(h.value("content-type"), QByteArray("a"));
    QCOMPARE(h.value("missing"), QByteArray());
    QCOMPARE(h.values("X-MULTI"), (QList<QByteArray>{"1", "2"}));
    QVERIFY(h.contains("X-multi"));
    QVERIFY(!h.contains("X-mult"));

    h.set("X-Multi", "3");
    QCOMPARE(h.values("x-multi"), (QList<QByteArray>{"3"}));
    QCOMPARE(h.list().at(1).name, QByteArray("X-Multi"));  // keeps its place
    h.set("New", "n");
    QCOMPARE(h.size(), 3);
    QCOMPARE(h.list().back().name, QByteArray("New"));

    h.add("new", "m");
    QCOMPARE(h.remove("NEW"), 2);
    QCOMPARE(h.remove("NEW"), 0);
    QCOMPARE(h.size(), 2);

    h.add("Connection", "keep-alive, Upgrade");
    h.add("Connection", "TE ; x=1");
    QVERIFY(h.hasToken("connection", "upgrade"));
    QVERIFY(h.hasToken("connection", "te"));
    QVERIFY(h.hasToken("connection", "Keep-Alive"));
    QVERIFY(!h.hasToken("connection", "close"));
    QVERIFY(!h.hasToken("connection", "keep"));
    QVERIFY(!h.hasToken("x-multi", "close"));
}

void TestHttpParser::keepAlive_data()
{
    QTest::addColumn<QByteArray>("input");
    QTest::addColumn<bool>("keepAlive");
    QTest::newRow("11-default") << QByteArray("GET / HTTP/1.1\r\nHost: x\r\n\r\n") << true;
    QTest::newRow("11-close") << QByteArray("GET / HTTP/1.1\r\nHost: x\r\nConnection: Close\r\n\r\n")
                              << false;
    QTest::newRow("11-close-in-list")
        << QByteArray("GET / HTTP/1.1\r\nHost: x\r\nConnection: te, close\r\n\r\n") << false;
    QTest::newRow("10-default") << QByteArray("GET / HTTP/1.0\r\n\r\n") << false;
    QTest::newRow("10-keep-alive")
        << QByteArray("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n") << true;
}

void TestHttpParser::keepAlive()
{
    QFETCH(QByteArray, input);
    QFETCH(bool, keepAlive);
    const auto r = parseRequestHead(input);
    QCOMPARE(r.state, ParseState::Complete);
    QCOMPARE(r.head.keepAlive(), keepAlive);
}

void TestHttpParser::serializeRoundTrip()
{
    const QByteArray wire = "POST /api/chat?x=1 HTTP/1.1\r\nHost: h:1\r\nContent-Type: "
                            "application/json\r\nContent-Length: 2\r\n\r\n";
    const auto r = parseRequestHead(wire);
    QCOMPARE(r.state, ParseState::Complete);
    QCOMPARE(serialize(r.head), wire);

    RequestHead head = r.head;
    head.headers.remove("Content-Length");
    head.headers.add("Transfer-Encoding", "chunked");
    const auto again = parseRequestHead(serialize(head));
    QCOMPARE(again.state, ParseState::Complete);
    QCOMPARE(again.head.target, QByteArray("/api/chat?x=1"));
    QCOMPARE(requestBodyFraming(again.head).kind, BodyFraming::Chunked);
}

void TestHttpParser::serializeResponse()
{
    ResponseHead head;
    head.status = 404;
    head.headers.add("Content-Length", "0");
    QCOMPARE(serialize(head), QByteArray("HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"));
    head.reason = "Nope";
    head.versionMinor = 0;
    const QByteArray wire = serialize(head);
    QCOMPARE(wire, QByteArray("HTTP/1.0 404 Nope\r\nContent-Length: 0\r\n\r\n"));
    const auto r = parseResponseHead(wire);
    QCOMPARE(r.state, ParseState::Complete);
    QCOMPARE(r.head.status, 404);
    QCOMPARE(r.head.reason, QByteArray("Nope"));
    QCOMPARE(r.consumed, wire.size());
}

void TestHttpParser::reasonPhrases_data()
{
    QTest::addColumn<int>("status");
    QTest::addColumn<QByteArray>("phrase");
    QTest::newRow("200") << 200 << QByteArray("OK");
    QTest::newRow("202") << 202 << QByteArray("Accepted");
    QTest::newRow("400") << 400 << QByteArray("Bad Request");
    QTest::newRow("401") << 401 << QByteArray("Unauthorized");
    QTest::newRow("404") << 404 << QByteArray("Not Found");
    QTest::newRow("413") << 413 << QByteArray("Content Too Large");
    QTest::newRow("414") << 414 << QByteArray("URI Too Long");
    QTest::newRow("431") << 431 << QByteArray("Request Header Fields Too Large");
    QTest::newRow("501") << 501 << QByteArray("Not Implemented");
    QTest::newRow("502") << 502 << QByteArray("Bad Gateway");
    QTest::newRow("503") << 503 << QByteArray("Service Unavailable");
    QTest::newRow("504") << 504 << QByteArray("Gateway Timeout");
    QTest::newRow("505") << 505 << QByteArray("HTTP Version Not Supported");
    QTest::newRow("unknown") << 299 << QByteArray();
}

void TestHttpParser::reasonPhrases()
{
    QFETCH(int, status);
    QFETCH(QByteArray, phrase);
    QCOMPARE(reasonPhrase(status), phrase);
}

void TestHttpParser::encodeChunks()
{
    QCOMPARE(encodeChunk("hello"), QByteArray("5\r\nhello\r\n"));
    QCOMPARE(encodeChunk(QByteArray(255, 'x')).left(4), QByteArray("ff\r\n"));
    QCOMPARE(encodeChunk(QByteArray()), QByteArray());  // never the terminator by accident
    QCOMPARE(lastChunk(), QByteArray("0\r\n\r\n"));
}

QTEST_GUILESS_MAIN(TestHttpParser)
#include "tst_httpparser.moc"
