// HTTP request heads as the proxy reads them from any client: never crash, never read past the
// input, and a head that parses serializes to a head that parses the same way.

#include "fuzzcheck.h"
#include "httpparser.h"

#include <cstddef>
#include <cstdint>

using namespace slullama::http;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    // The first byte picks the limits, so small limits (the proxy's test settings) get hit too.
    Limits limits;
    QByteArrayView input(reinterpret_cast<const char *>(data), qsizetype(size));
    if (!input.isEmpty()) {
        const auto mode = static_cast<unsigned char>(input.front());
        input = input.sliced(1);
        limits.requireHost = (mode & 1) == 0;
        if (mode & 2) {
            limits.maxHeadBytes = 512;
            limits.maxLineLength = 128;
            limits.maxHeaderCount = 8;
        }
    }

    const auto parsed = parseRequestHead(input, limits);
    switch (parsed.state) {
    case ParseState::Incomplete:
        FUZZ_CHECK(parsed.consumed == 0);
        return 0;
    case ParseState::Error:
        FUZZ_CHECK(parsed.errorStatus >= 400 && parsed.errorStatus <= 505);
        FUZZ_CHECK(!parsed.error.isEmpty());
        return 0;
    case ParseState::Complete:
        break;
    }
    const RequestHead &head = parsed.head;
    FUZZ_CHECK(parsed.consumed > 0 && parsed.consumed <= input.size());
    FUZZ_CHECK(parsed.consumed <= limits.maxHeadBytes);
    FUZZ_CHECK(head.headers.size() <= limits.maxHeaderCount);
    FUZZ_CHECK(!head.method.isEmpty() && !head.target.isEmpty());
    // Routing uses `path`, forwarding uses `target`: they must agree. Absolute-form targets
    // carry scheme and host before the path; an empty absolute path means "/".
    FUZZ_CHECK(head.path.startsWith('/') || head.target == "*" || head.method == "CONNECT");
    FUZZ_CHECK(head.target.contains(head.path) || head.path == "/");

    // Exactly the head is needed: the same bytes alone parse the same; one byte less does not.
    const auto alone = parseRequestHead(input.first(parsed.consumed), limits);
    FUZZ_CHECK(alone.state == ParseState::Complete && alone.consumed == parsed.consumed);
    const auto shorter = parseRequestHead(input.first(parsed.consumed - 1), limits);
    FUZZ_CHECK(shorter.state != ParseState::Complete);

    // What the proxy does with a parsed head must not fail either.
    (void)head.keepAlive();
    (void)head.headers.hasToken("connection", "close");
    const BodyFraming framing = requestBodyFraming(head);
    FUZZ_CHECK(framing.kind != BodyFraming::Length || framing.length >= 0);
    FUZZ_CHECK(framing.kind != BodyFraming::Invalid || framing.errorStatus >= 400);

    // Round trip: serialize() writes what the parser accepts, with the same meaning.
    const QByteArray again = serialize(head);
    Limits roomy = limits;
    roomy.maxHeadBytes = again.size() + 1;
    roomy.maxLineLength = again.size() + 1;
    const auto reparsed = parseRequestHead(again, roomy);
    FUZZ_CHECK(reparsed.state == ParseState::Complete);
    FUZZ_CHECK(reparsed.consumed == again.size());
    FUZZ_CHECK(reparsed.head.method == head.method);
    FUZZ_CHECK(reparsed.head.target == head.target);
    FUZZ_CHECK(reparsed.head.versionMinor == head.versionMinor);
    FUZZ_CHECK(reparsed.head.headers.size() == head.headers.size());
    for (qsizetype i = 0; i < head.headers.size(); ++i) {
        FUZZ_CHECK(reparsed.head.headers.list().at(i).name == head.headers.list().at(i).name);
        FUZZ_CHECK(reparsed.head.headers.list().at(i).value == head.headers.list().at(i).value);
    }
    return 0;
}
