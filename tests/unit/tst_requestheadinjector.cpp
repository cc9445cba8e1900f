#include "requestheadinjector.h"

#include <QTest>

using namespace slullama;

namespace {

const QByteArray kValue = QByteArrayLiteral("Bearer s3cret");
const QByteArray kLine = QByteArrayLiteral("Authorization: Bearer s3cret\r\n");

// Feeds `input` in pieces cut at `cuts` (ascending offsets), through next() so that the
// progress guarantee is checked too.
QByteArray run(RequestHeadInjector &inj, const QByteArray &input, const QList<qsizetype> &cuts)
{
    QByteArray out;
    qsizetype from = 0;
    QList<qsizetype> ends = cuts;
    ends.append(input.size());
    for (qsizetype end : ends) {
        QByteArrayView in = QByteArrayView(input).sliced(from, end - from);
        while (!in.isEmpty()) {
            const RequestHeadInjector::Piece piece = inj.next(in);
            if (piece.consumed <= 0 || piece.consumed > in.size()) {
                qWarning() << "no progress at" << from;
                return QByteArrayLiteral("<no progress>");
            }
            out.append(piece.bytes);
            in = in.sliced(piece.consumed);
        }
        from = end;
    }
    out.append(inj.finish());
    return out;
}

QByteArray get(const char *path, const QByteArray &extra = {})
{
    return QByteArray("GET ") + path + " HTTP/1.1\r\nHost: localhost:11434\r\n" + extra + "\r\n";
}

QByteArray withToken(const char *path, const QByteArray &extra = {})
{
    return QByteArray("GET ") + path + " HTTP/1.1\r\nHost: localhost:11434\r\n" + extra + kLine
        + "\r\n";
}

} // namespace

class TestRequestHeadInjector final : public QObject
{
    Q_OBJECT

private Q_SLOTS:
    void filter_data();
    void filter();
    void splitAtEveryOffset_data();
    void splitAtEveryOffset();
    void oneByteAtATime_data();
    void oneByteAtATime();
    void bodyIsNotCopied();
    void expectContinueBodyLater();
    void incompleteHeadFlushedOnFinish();
    void unsafeValueDisables_data();
    void unsafeValueDisables();
};

void TestRequestHeadInjector::filter_data()
{
    QTest::addColumn<QByteArray>("input");
    QTest::addColumn<QByteArray>("expected");
    QTest::addColumn<int>("changed");
    QTest::addColumn<bool>("passThrough"); // at the end

    QTest::newRow("single GET") << get("/api/tags") << withToken("/api/tags") << 1 << false;

    const QByteArray postBody = R"({"model":"m","prompt":"hi"})";
    const QByteArray post = "POST /api/generate HTTP/1.1\r\nHost: x\r\nContent-Length: "
        + QByteArray::number(postBody.size()) + "\r\n\r\n" + postBody;
    const QByteArray postOut = "POST /api/generate HTTP/1.1\r\nHost: x\r\nContent-Length: "
        + QByteArray::number(postBody.size()) + "\r\n" + kLine + "\r\n" + postBody;
    QTest::newRow("POST with Content-Length") << post << postOut << 1 << false;

    QTest::newRow("keep-alive sequence")
        << get("/api/version") + post + get("/api/tags")
        << withToken("/api/version") + postOut + withToken("/api/tags") << 3 << false;

    // A body that looks like a request head must pass untouched, and the head after it changes.
    const QByteArray sneaky = "GET /evil HTTP/1.1\r\nHost: x\r\n\r\n";
    const QByteArray lengthSneaky = "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: "
        + QByteArray::number(sneaky.size()) + "\r\n\r\n" + sneaky;
    const QByteArray lengthSneakyOut = "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: "
        + QByteArray::number(sneaky.size()) + "\r\n" + kLine + "\r\n" + sneaky;
    QTest::newRow("pipelined, body looks like a head")
        << lengthSneaky + get("/b") + get("/c")
        << lengthSneakyOut + withToken("/b") + withToken("/c") << 3 << false;

    const QByteArray chunkedBody = QByteArray::number(sneaky.size(), 16) + "\r\n" + sneaky
        + "\r\n5;ext=1\r\nhello\r\n0\r\nX-Trailer: t\r\n\r\n";
    const QByteArray chunked
        = "POST /api/chat HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + chunkedBody;
    const QByteArray chunkedOut
        = "POST /api/chat HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n" + kLine + "\r\n"
        + chunkedBody;
    QTest::newRow("chunked body containing a head")
        << chunked + get("/next") << chunkedOut + withToken("/next") << 2 << false;

    QTest::newRow("own Authorization kept")
        << get("/a", "Authorization: Bearer per-user-key\r\n") + get("/b")
        << get("/a", "Authorization: Bearer per-user-key\r\n") + withToken("/b") << 1 << false;
    QTest::newRow("lowercase authorization kept")
        << get("/a", "authorization: Basic Zm9vOmJhcg==\r\n")
        << get("/a", "authorization: Basic Zm9vOmJhcg==\r\n") << 0 << false;

    QTest::newRow("HTTP/1.0 without Host")
        << QByteArray("GET /api/tags HTTP/1.0\r\n\r\n")
        << QByteArray("GET /api/tags HTTP/1.0\r\n") + kLine + "\r\n"
        << 1 << false;
    QTest::newRow("bare LF head") << QByteArray("GET / HTTP/1.1\nHost: x\n\n")
                                  << QByteArray("GET / HTTP/1.1\nHost: x\n") + kLine + "\n"
                                  << 1 << false;
    QTest::newRow("empty lines between requests")
        << get("/a") + "\r\n" + get("/b") << withToken("/a") + "\r\n" + withToken("/b") << 2
        << false;
    QTest::newRow("Content-Length 0")
        << QByteArray("POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n") + get("/b")
        << QByteArray("POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n") + kLine + "\r\n"
            + withToken("/b")
        << 2 << false;

    // Anything it does not understand goes through unchanged, and so does the rest.
    const QByteArray garbage
        = QByteArray("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 11) + get("/x");
    QTest::newRow("TLS hello: pass-through") << garbage << garbage << 0 << true;
    QTest::newRow("malformed request line")
        << QByteArray("GET  /a HTTP/1.1\r\nHost: x\r\n\r\n") + get("/b")
        << QByteArray("GET  /a HTTP/1.1\r\nHost: x\r\n\r\n") + get("/b") << 0 << true;
    QTest::newRow("HTTP/2 preface") << QByteArray("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
                                    << QByteArray("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n") << 0 << true;
    QTest::newRow("malformed after a good one")
        << get("/a") + "GET /b HTTP/1.1\r\nBad Header: x\r\n\r\n" + get("/c")
        << withToken("/a") + "GET /b HTTP/1.1\r\nBad Header: x\r\n\r\n" + get("/c") << 1 << true;
    QTest::newRow("both TE and CL") << QByteArray(
        "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\nabc")
                                    << QByteArray("POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: "
                                                  "3\r\nTransfer-Encoding: chunked\r\n\r\nabc")
                                    << 0 << true;
    const QByteArray badChunk = "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
    QTest::newRow("bad chunk size: rest unchanged")
        << badChunk + "zz\r\n" + get("/b")
        << "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n" + kLine + "\r\nzz\r\n"
            + get("/b")
        << 1 << true;
    QTest::newRow("Upgrade: rest unchanged")
        << get("/ws", "Connection: Upgrade\r\nUpgrade: websocket\r\n") + "\x81\x05hello" + get("/b")
        << withToken("/ws", "Connection: Upgrade\r\nUpgrade: websocket\r\n") + "\x81\x05hello"
            + get("/b")
        << 1 << true;
    QTest::newRow("CONNECT: rest unchanged")
        << QByteArray("CONNECT host:443 HTTP/1.1\r\nHost: host:443\r\n\r\n") + get("/b")
        << QByteArray("CONNECT host:443 HTTP/1.1\r\nHost: host:443\r\n") + kLine + "\r\n"
            + get("/b")
        << 1 << true;
}

void TestRequestHeadInjector::filter()
{
    QFETCH(QByteArray, input);
    QFETCH(QByteArray, expected);
    QFETCH(int, changed);
    QFETCH(bool, passThrough);

    RequestHeadInjector inj("Authorization", kValue);
    QVERIFY(inj.isEnabled());
    QByteArray out;
    inj.feed(input, out);
    QCOMPARE(inj.isPassThrough(), passThrough);
    out.append(inj.finish());
    QCOMPARE(out, expected);
    QCOMPARE(inj.headsChanged(), changed);
}

void TestRequestHeadInjector::splitAtEveryOffset_data()
{
    filter_data();
}

void TestRequestHeadInjector::splitAtEveryOffset()
{
    QFETCH(QByteArray, input);
    QFETCH(QByteArray, expected);
    QFETCH(int, changed);

    for (qsizetype cut = 1; cut < input.size(); ++cut) {
        RequestHeadInjector inj("Authorization", kValue);
        const QByteArray out = run(inj, input, {cut});
        if (out != expected)
            QFAIL(qPrintable(QStringLiteral("split at %1: got %2")
                                 .arg(cut)
                                 .arg(QString::fromLatin1(out.toPercentEncoding()))));
        QCOMPARE(inj.headsChanged(), changed);
    }
    // Three pieces as well: heads and bodies split in two places.
    for (qsizetype a = 1; a + 1 < input.size(); a += 3) {
        for (qsizetype b = a + 1; b < input.size(); b += 5) {
            RequestHeadInjector inj("Authorization", kValue);
            QCOMPARE(run(inj, input, {a, b}), expected);
        }
    }
}

void TestRequestHeadInjector::oneByteAtATime_data()
{
    filter_data();
}

void TestRequestHeadInjector::oneByteAtATime()
{
    QFETCH(QByteArray, input);
    QFETCH(QByteArray, expected);
    QFETCH(int, changed);

    QList<qsizetype> cuts;
    for (qsizetype i = 1; i < input.size(); ++i)
        cuts.append(i);
    RequestHeadInjector inj("Authorization", kValue);
    QCOMPARE(run(inj, input, cuts), expected);
    QCOMPARE(inj.headsChanged(), changed);
}

void TestRequestHeadInjector::bodyIsNotCopied()
{
    // The tunnel forwards body bytes straight from its read buffer.
    RequestHeadInjector inj("Authorization", kValue);
    const QByteArray head = "POST /api/pull HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n";
    const QByteArray body(1000, 'b');
    QByteArray out;
    inj.feed(head, out);
    QCOMPARE(out,
             "POST /api/pull HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n" + kLine + "\r\n");
    const QByteArrayView in(body);
    const RequestHeadInjector::Piece piece = inj.next(in.first(400));
    QCOMPARE(piece.consumed, 400);
    QCOMPARE(piece.bytes.data(), in.data());
    QCOMPARE(piece.bytes.size(), 400);

    // Body end and the next head in one read: the body piece stops exactly at the boundary.
    const QByteArray rest = body.sliced(400) + get("/after");
    const RequestHeadInjector::Piece tail = inj.next(rest);
    QCOMPARE(tail.consumed, 600);
    QCOMPARE(tail.bytes.data(), rest.constData());
    const RequestHeadInjector::Piece next = inj.next(QByteArrayView(rest).sliced(600));
    QCOMPARE(next.bytes.toByteArray(), withToken("/after"));
}

void TestRequestHeadInjector::expectContinueBodyLater()
{
    // curl sends the head, waits for "100 Continue" (which only the daemon can send once it
    // accepted the injected token), then the body.
    RequestHeadInjector inj("Authorization", kValue);
    QByteArray out;
    inj.feed(
        "POST /api/create HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n",
        out);
    QCOMPARE(out,
             "POST /api/create HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nExpect: 100-continue\r\n"
                 + kLine + "\r\n");
    QCOMPARE(inj.heldBytes(), 0);
    out.clear();
    inj.feed(QByteArray("GET " + get("/b")), out); // "GET " is the 4-byte body
    QCOMPARE(out, "GET " + withToken("/b"));
    QVERIFY(!inj.isPassThrough());
}

void TestRequestHeadInjector::incompleteHeadFlushedOnFinish()
{
    RequestHeadInjector inj("Authorization", kValue);
    QByteArray out;
    inj.feed("GET /api/tags HTTP/1.1\r\nHost:", out);
    QVERIFY(out.isEmpty());
    QCOMPARE(inj.heldBytes(), 29);
    QCOMPARE(inj.finish(), "GET /api/tags HTTP/1.1\r\nHost:");
    QVERIFY(inj.isPassThrough());
    inj.feed(" x\r\n\r\n", out);
    QCOMPARE(out, " x\r\n\r\n");
}

void TestRequestHeadInjector::unsafeValueDisables_data()
{
    QTest::addColumn<QByteArray>("name");
    QTest::addColumn<QByteArray>("value");
    QTest::newRow("CRLF in value")
        << QByteArray("Authorization") << QByteArray("Bearer a\r\nX-Evil: 1");
    QTest::newRow("LF in value") << QByteArray("Authorization") << QByteArray("Bearer a\nb");
    QTest::newRow("NUL in value") << QByteArray("Authorization") << QByteArray("Bearer a\0b", 10);
    QTest::newRow("colon in name") << QByteArray("Auth:x") << QByteArray("Bearer a");
    QTest::newRow("empty name") << QByteArray() << QByteArray("Bearer a");
}

void TestRequestHeadInjector::unsafeValueDisables()
{
    QFETCH(QByteArray, name);
    QFETCH(QByteArray, value);
    RequestHeadInjector inj(name, value);
    QVERIFY(!inj.isEnabled());
    QByteArray out;
    inj.feed(get("/a"), out);
    QCOMPARE(out, get("/a"));
}

QTEST_GUILESS_MAIN(TestRequestHeadInjector)
#include "tst_requestheadinjector.moc"
