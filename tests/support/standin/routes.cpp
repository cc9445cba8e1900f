// The Ollama API as the stand-in answers it: same routes, same JSON shapes (field order as
// Ollama's Go structs), deterministic content so tests can check what came through.

#include "jsonwriter.h"
#include "server.h"

#include <QCryptographicHash>
#include <QJsonArray>
#include <QJsonDocument>
#include <QJsonObject>
#include <QUrl>
#include <QUrlQuery>

#include <cmath>
#include <ctime>
#include <optional>

namespace slullama::standin {

namespace {

constexpr char kJson[] = "application/json; charset=utf-8";
constexpr char kNdjson[] = "application/x-ndjson";
constexpr char kSse[] = "text/event-stream";
constexpr int kMaxTokens = 10'000'000;
constexpr int kEmbeddingDims = 16;

QByteArray nowIso()
{
    return QDateTime::currentDateTimeUtc().toString(Qt::ISODateWithMs).toLatin1();
}

qint64 realtimeUs()
{
    timespec ts{};
    clock_gettime(CLOCK_REALTIME, &ts);
    return qint64(ts.tv_sec) * 1'000'000 + ts.tv_nsec / 1000;
}

qint64 nowNs()
{
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return qint64(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

QByteArray errorJson(const QString &message)
{
    return JsonObject().str("error", message).done();
}

// OpenAI-compatible routes answer errors in OpenAI's shape (ollama/openai NewError).
QByteArray openAiErrorJson(int status, const QString &message)
{
    const char *type = status == 400 ? "invalid_request_error"
                       : status == 404 ? "not_found_error"
                                       : "api_error";
    const QByteArray inner =
        JsonObject().str("message", message).str("type", type).null("param").null("code").done();
    return JsonObject().raw("error", inner).done();
}

QString notFoundMessage(const QString &model)
{
    return QStringLiteral("model \"%1\" not found, try pulling it first").arg(model);
}

void notFound(Connection &c)
{
    c.respond(404, "text/plain", QByteArrayLiteral("404 page not found"));
}

// Parses the JSON body; on failure answers 400 and returns nothing.
std::optional<QJsonObject> jsonBody(Connection &c, bool openAi = false)
{
    auto fail = [&](const QString &msg) {
        c.respondJson(400, openAi ? openAiErrorJson(400, msg) : errorJson(msg));
        return std::nullopt;
    };
    if (c.body().trimmed().isEmpty())
        return fail(QStringLiteral("missing request body"));
    QJsonParseError error{};
    const QJsonDocument doc = QJsonDocument::fromJson(c.body(), &error);
    if (error.error != QJsonParseError::NoError)
        return fail(QStringLiteral("invalid JSON at offset %1: %2")
                        .arg(error.offset)
                        .arg(error.errorString()));
    if (!doc.isObject())
        return fail(QStringLiteral("request body must be a JSON object"));
    return doc.object();
}

QString modelField(const QJsonObject &req)
{
    const QString m = req.value(QLatin1String("model")).toString();
    return m.isEmpty() ? req.value(QLatin1String("name")).toString() : m;
}

QByteArray detailsJson(const ModelInfo &m)
{
    return JsonObject()
        .str("parent_model", "")
        .str("format", "gguf")
        .str("family", m.family)
        .raw("families", "[" + jsonString(m.family) + "]")
        .str("parameter_size", m.parameterSize)
        .str("quantization_level", "Q4_K_M")
        .done();
}

int wordCount(const QString &s)
{
    int n = 0;
    bool inWord = false;
    for (QChar ch : s) {
        const bool space = ch.isSpace();
        n += (!space && !inWord) ? 1 : 0;
        inWord = !space;
    }
    return n;
}

// The n-th generated token; the whole answer reads "tok0 tok1 tok2 ...".
QByteArray token(int i)
{
    if (i == 0)
        return QByteArrayLiteral("tok0");
    return " tok" + QByteArray::number(i);
}

QByteArray fullText(int count)
{
    QByteArray out;
    for (int i = 0; i < count; ++i)
        out += token(i);
    return out;
}

// What a generation request asked for, after defaults and overrides.
struct Generation
{
    QString model;
    QByteArray modelJson;  // the name as a JSON string
    int tokens = 0;
    qint64 delayUs = 0;
    bool stream = true;
    bool limited = false;  // num_predict/max_tokens given: the answer ends for "length"
    int promptTokens = 1;
    qint64 startNs = 0;

    QByteArray doneReason() const { return limited ? "length" : "stop"; }
};

// Fills the common fields; answers the error itself and returns false on bad input.
bool setUpGeneration(Connection &c, const QJsonObject &req, bool openAi, Generation &g)
{
    Server &s = c.server();
    auto fail = [&](int status, const QString &msg) {
        c.respondJson(status, openAi ? openAiErrorJson(status, msg) : errorJson(msg));
        return false;
    };
    g.startNs = nowNs();
    g.model = req.value(QLatin1String("model")).toString();
    if (g.model.isEmpty())
        return fail(400, QStringLiteral("model is required"));
    const ModelInfo *m = s.findModel(g.model);
    if (!m)
        return fail(404, notFoundMessage(g.model));
    g.modelJson = jsonString(g.model);

    const QJsonValue stream = req.value(QLatin1String("stream"));
    if (!stream.isUndefined() && !stream.isNull() && !stream.isBool())
        return fail(400, QStringLiteral("\"stream\" must be a boolean"));
    g.stream = stream.isBool() ? stream.toBool() : !openAi;  // Ollama streams by default, OpenAI not

    g.tokens = s.settings().tokens;
    g.delayUs = qint64(s.settings().tokenDelayMs) * 1000;
    const QJsonObject options = req.value(QLatin1String("options")).toObject();
    const int numPredict = openAi ? req.value(QLatin1String("max_tokens")).toInt(-1)
                                  : options.value(QLatin1String("num_predict")).toInt(-1);
    if (numPredict > 0) {
        g.tokens = qMin(numPredict, kMaxTokens);
        g.limited = true;
    }
    if (options.contains(QLatin1String("standin_token_delay_ms")))
        g.delayUs = qMax(0, options.value(QLatin1String("standin_token_delay_ms")).toInt()) * 1000LL;
    s.markLoaded(g.model);
    return true;
}

int promptTokensOf(const QJsonArray &messages)
{
    int n = 0;
    for (const QJsonValue &v : messages)
        n += wordCount(v.toObject().value(QLatin1String("content")).toString());
    return qMax(1, n);
}

// The timing and count fields Ollama appends to the final answer of a generation.
JsonObject &appendMetrics(JsonObject &o, const Generation &g)
{
    const qint64 total = qMax<qint64>(1, nowNs() - g.startNs);
    return o.num("total_duration", total)
        .num("load_duration", 1000)
        .num("prompt_eval_count", g.promptTokens)
        .num("prompt_eval_duration", 1000)
        .num("eval_count", g.tokens)
        .num("eval_duration", total);
}

// ---- /api/chat and /api/generate --------------------------------------------------------------

void chat(Connection &c, bool generate)
{
    const auto req = jsonBody(c);
    if (!req)
        return;
    Generation g;
    if (!setUpGeneration(c, *req, false, g))
        return;

    QJsonArray messages;
    QString prompt;
    if (generate) {
        prompt = req->value(QLatin1String("prompt")).toString();
        g.promptTokens = qMax(1, wordCount(prompt));
    } else {
        const QJsonValue mv = req->value(QLatin1String("messages"));
        if (!mv.isUndefined() && !mv.isNull() && !mv.isArray()) {
            c.respondJson(400, errorJson(QStringLiteral("\"messages\" must be an array")));
            return;
        }
        messages = mv.toArray();
        g.promptTokens = promptTokensOf(messages);
    }

    // No prompt: Ollama only loads (or, with keep_alive 0, unloads) the model and says so.
    const bool empty = generate ? prompt.isEmpty() : messages.isEmpty();
    if (empty) {
        const QJsonValue keepAlive = req->value(QLatin1String("keep_alive"));
        const bool unload = keepAlive.isDouble() ? keepAlive.toDouble() == 0
                                                 : keepAlive.toString() == QLatin1String("0");
        JsonObject o;
        o.raw("model", g.modelJson).str("created_at", nowIso());
        if (generate)
            o.str("response", "");
        else
            o.raw("message", R"({"role":"assistant","content":""})");
        o.str("done_reason", unload ? "unload" : "load").boolean("done", true);
        c.respondJson(200, o.done());
        return;
    }

    auto chunk = [generate, modelJson = g.modelJson](int i) -> QByteArray {
        QByteArray line = "{\"model\":" + modelJson + ",\"created_at\":\"" + nowIso() + "\",";
        if (generate)
            line += "\"response\":\"" + token(i) + "\"";
        else
            line += "\"message\":{\"role\":\"assistant\",\"content\":\"" + token(i) + "\"}";
        line += ",\"done\":false}\n";
        return line;
    };
    auto final = [generate, g](const QByteArray &content) -> QByteArray {
        JsonObject o;
        o.raw("model", g.modelJson).str("created_at", nowIso());
        if (generate)
            o.str("response", content);
        else
            o.raw("message", JsonObject().str("role", "assistant").str("content", content).done());
        o.str("done_reason", g.doneReason()).boolean("done", true);
        if (generate)
            o.raw("context", "[1,2,3]");
        appendMetrics(o, g);
        return o.done();
    };

    if (!g.stream) {
        c.respondLater(g.tokens * g.delayUs / 1000, [&c, final, g] {
            c.respondJson(200, final(fullText(g.tokens)));
        });
        return;
    }
    Connection::Stream st;
    st.contentType = kNdjson;
    st.count = g.tokens;
    st.firstDelayUs = g.delayUs;
    st.intervalUs = g.delayUs;
    st.piece = chunk;
    st.finish = [final]() -> QByteArray { return final(QByteArray()) + '\n'; };
    c.startStream(std::move(st));
}

// ---- /v1/chat/completions ---------------------------------------------------------------------

void openAiChat(Connection &c)
{
    const auto req = jsonBody(c, true);
    if (!req)
        return;
    Generation g;
    if (!setUpGeneration(c, *req, true, g))
        return;
    const QJsonValue mv = req->value(QLatin1String("messages"));
    if (!mv.isArray() || mv.toArray().isEmpty()) {
        c.respondJson(400, openAiErrorJson(400, QStringLiteral("[] is too short - 'messages'")));
        return;
    }
    g.promptTokens = promptTokensOf(mv.toArray());
    static quint32 counter = 0;
    const QByteArray id = "chatcmpl-" + QByteArray::number(++counter % 1000);
    const qint64 created = QDateTime::currentSecsSinceEpoch();
    const bool includeUsage = req->value(QLatin1String("stream_options"))
                                  .toObject()
                                  .value(QLatin1String("include_usage"))
                                  .toBool();
    const QByteArray usage = JsonObject()
                                 .num("prompt_tokens", g.promptTokens)
                                 .num("completion_tokens", g.tokens)
                                 .num("total_tokens", g.promptTokens + g.tokens)
                                 .done();

    if (!g.stream) {
        c.respondLater(g.tokens * g.delayUs / 1000, [&c, g, id, created, usage] {
            const QByteArray choice =
                JsonObject()
                    .num("index", 0)
                    .raw("message",
                         JsonObject().str("role", "assistant").str("content", fullText(g.tokens)).done())
                    .str("finish_reason", g.doneReason())
                    .done();
            c.respondJson(200, JsonObject()
                                   .str("id", id)
                                   .str("object", "chat.completion")
                                   .num("created", created)
                                   .raw("model", g.modelJson)
                                   .str("system_fingerprint", "fp_ollama")
                                   .raw("choices", "[" + choice + "]")
                                   .raw("usage", usage)
                                   .done());
        });
        return;
    }

    auto event = [id, g](QByteArrayView content, const QByteArray &finishReason) -> QByteArray {
        JsonObject choice;
        choice.num("index", 0).raw("delta",
                                   JsonObject().str("role", "assistant").str("content", content).done());
        if (finishReason.isEmpty())
            choice.null("finish_reason");
        else
            choice.str("finish_reason", finishReason);
        return "data: "
               + JsonObject()
                     .str("id", id)
                     .str("object", "chat.completion.chunk")
                     .num("created", QDateTime::currentSecsSinceEpoch())
                     .raw("model", g.modelJson)
                     .str("system_fingerprint", "fp_ollama")
                     .raw("choices", "[" + choice.done() + "]")
                     .done()
               + "\n\n";
    };
    Connection::Stream st;
    st.contentType = kSse;
    st.count = g.tokens;
    st.firstDelayUs = g.delayUs;
    st.intervalUs = g.delayUs;
    st.piece = [event](int i) -> QByteArray { return event(token(i), QByteArray()); };
    st.finish = [event, g, id, usage, includeUsage]() -> QByteArray {
        QByteArray tail = event("", g.doneReason());
        if (includeUsage) {
            tail += "data: "
                    + JsonObject()
                          .str("id", id)
                          .str("object", "chat.completion.chunk")
                          .num("created", QDateTime::currentSecsSinceEpoch())
                          .raw("model", g.modelJson)
                          .str("system_fingerprint", "fp_ollama")
                          .raw("choices", "[]")
                          .raw("usage", usage)
                          .done()
                    + "\n\n";
        }
        return tail + "data: [DONE]\n\n";
    };
    c.startStream(std::move(st));
}

// ---- models -----------------------------------------------------------------------------------

void tags(Connection &c)
{
    QByteArray list = "[";
    for (const ModelInfo &m : c.server().models()) {
        if (list.size() > 1)
            list += ',';
        list += JsonObject()
                    .str("name", m.name)
                    .str("model", m.name)
                    .str("modified_at", m.modifiedAt.toString(Qt::ISODateWithMs))
                    .num("size", m.size)
                    .str("digest", m.digest)
                    .raw("details", detailsJson(m))
                    .done();
    }
    list += ']';
    c.respondJson(200, JsonObject().raw("models", list).done());
}

void openAiModels(Connection &c, const QString &one)
{
    auto entry = [](const ModelInfo &m) {
        return JsonObject()
            .str("id", m.name)
            .str("object", "model")
            .num("created", m.modifiedAt.toSecsSinceEpoch())
            .str("owned_by", "library")
            .done();
    };
    if (!one.isEmpty()) {
        const ModelInfo *m = c.server().findModel(one);
        if (!m)
            c.respondJson(404, openAiErrorJson(404, QStringLiteral("model \"%1\" not found").arg(one)));
        else
            c.respondJson(200, entry(*m));
        return;
    }
    QByteArray list = "[";
    for (const ModelInfo &m : c.server().models()) {
        if (list.size() > 1)
            list += ',';
        list += entry(m);
    }
    list += ']';
    c.respondJson(200, JsonObject().str("object", "list").raw("data", list).done());
}

void show(Connection &c)
{
    const auto req = jsonBody(c);
    if (!req)
        return;
    const QString name = modelField(*req);
    if (name.isEmpty()) {
        c.respondJson(400, errorJson(QStringLiteral("model is required")));
        return;
    }
    const ModelInfo *m = c.server().findModel(name);
    if (!m) {
        c.respondJson(404, errorJson(QStringLiteral("model '%1' not found").arg(name)));
        return;
    }
    const QByteArray modelInfo = JsonObject()
                                     .str("general.architecture", m->family)
                                     .str("general.basename", m->family)
                                     .num("general.parameter_count", m->size * 2)
                                     .num("general.quantization_version", 2)
                                     .num(QByteArray(m->family + ".context_length").constData(), 4096)
                                     .done();
    c.respondJson(200,
                  JsonObject()
                      .str("license", "stand-in model, no license")
                      .str("modelfile", QByteArray("# Modelfile generated by \"ollama show\"\nFROM "
                                                       + m->name.toUtf8() + "\n"))
                      .str("parameters", "stop \"<|end|>\"")
                      .str("template", "{{ .Prompt }}")
                      .raw("details", detailsJson(*m))
                      .raw("model_info", modelInfo)
                      .raw("capabilities", m->embedding ? "[\"embedding\"]" : "[\"completion\"]")
                      .str("modified_at", m->modifiedAt.toString(Qt::ISODateWithMs))
                      .done());
}

void ps(Connection &c)
{
    c.respondJson(200, c.server().runningModelsJson());
}

void deleteModel(Connection &c)
{
    const auto req = jsonBody(c);
    if (!req)
        return;
    const QString name = modelField(*req);
    if (!c.server().removeModel(name)) {
        c.respondJson(404, errorJson(QStringLiteral("model '%1' not found").arg(name)));
        return;
    }
    c.respond(200, "", QByteArray());
}

// ---- /api/pull --------------------------------------------------------------------------------

void pull(Connection &c)
{
    const auto req = jsonBody(c);
    if (!req)
        return;
    const QString name = modelField(*req);
    if (name.isEmpty()) {
        c.respondJson(400, errorJson(QStringLiteral("model is required")));
        return;
    }
    const bool stream = req->value(QLatin1String("stream")).toBool(true);
    const qint64 delayMs = c.server().settings().pullDelayMs;
    // Names starting with "missing" do not exist upstream: tests use them for a failing pull.
    const bool missing = normalizeModelName(name).section(u'/', -1).startsWith(QLatin1String("missing"));
    const QByteArray failure = errorJson(QStringLiteral("pull model manifest: file does not exist"));

    QList<QByteArray> lines{JsonObject().str("status", "pulling manifest").done()};
    if (!missing) {
        const QByteArray digest =
            QCryptographicHash::hash(name.toUtf8(), QCryptographicHash::Sha256).toHex();
        const qint64 total = 100'000'000;
        for (int step = 0; step <= 4; ++step) {
            lines.append(JsonObject()
                             .str("status", QByteArray("pulling " + digest.left(12)))
                             .str("digest", QByteArray("sha256:" + digest))
                             .num("total", total)
                             .num("completed", total * step / 4)
                             .done());
        }
        lines.append(JsonObject().str("status", "verifying sha256 digest").done());
        lines.append(JsonObject().str("status", "writing manifest").done());
    }

    Server *server = &c.server();
    if (!stream) {
        c.respondLater(delayMs * lines.size(), [&c, server, name, missing, failure] {
            if (missing) {
                c.respondJson(500, failure);
                return;
            }
            server->addModel(name);
            c.respondJson(200, JsonObject().str("status", "success").done());
        });
        return;
    }
    Connection::Stream st;
    st.contentType = kNdjson;
    st.count = int(lines.size());
    st.intervalUs = delayMs * 1000;
    st.piece = [lines](int i) -> QByteArray { return lines.at(i) + '\n'; };
    st.finish = [server, name, missing, failure]() -> QByteArray {
        if (missing)
            return failure + '\n';
        server->addModel(name);
        return JsonObject().str("status", "success").done() + '\n';
    };
    c.startStream(std::move(st));
}

// ---- embeddings -------------------------------------------------------------------------------

// A unit vector derived from the text: the same input always gives the same embedding.
QByteArray embedding(const QString &model, const QString &text, int dims)
{
    QByteArray seed = QCryptographicHash::hash(QByteArray(model.toUtf8() + '\0' + text.toUtf8()),
                                               QCryptographicHash::Sha256);
    while (seed.size() < dims)
        seed += QCryptographicHash::hash(seed, QCryptographicHash::Sha256);
    QList<double> v(dims);
    double norm = 0;
    for (int i = 0; i < dims; ++i) {
        v[i] = uchar(seed[i]) / 127.5 - 1.0;
        norm += v[i] * v[i];
    }
    norm = std::sqrt(qMax(norm, 1e-12));
    QByteArray out = "[";
    for (int i = 0; i < dims; ++i) {
        if (i)
            out += ',';
        out += QByteArray::number(v[i] / norm, 'g', 8);
    }
    out += ']';
    return out;
}

QStringList inputs(const QJsonValue &input)
{
    if (input.isString())
        return {input.toString()};
    QStringList out;
    for (const QJsonValue &v : input.toArray())
        out.append(v.toString());
    return out;
}

void embed(Connection &c, bool legacy, bool openAi)
{
    const auto req = jsonBody(c, openAi);
    if (!req)
        return;
    const qint64 start = nowNs();
    const QString model = req->value(QLatin1String("model")).toString();
    auto fail = [&](int status, const QString &msg) {
        c.respondJson(status, openAi ? openAiErrorJson(status, msg) : errorJson(msg));
    };
    if (model.isEmpty())
        return fail(400, QStringLiteral("model is required"));
    if (!c.server().findModel(model))
        return fail(404, notFoundMessage(model));
    c.server().markLoaded(model);
    const int dims = req->value(QLatin1String("dimensions")).toInt(0) > 0
                         ? qMin(req->value(QLatin1String("dimensions")).toInt(), 4096)
                         : kEmbeddingDims;

    if (legacy) {  // /api/embeddings: one prompt, one "embedding"
        const QString prompt = req->value(QLatin1String("prompt")).toString();
        c.respondJson(200, JsonObject().raw("embedding", embedding(model, prompt, dims)).done());
        return;
    }
    const QStringList texts = inputs(req->value(QLatin1String("input")));
    int promptTokens = 0;
    QByteArray list = "[";
    for (int i = 0; i < texts.size(); ++i) {
        promptTokens += qMax(1, wordCount(texts[i]));
        if (i)
            list += ',';
        const QByteArray e = embedding(model, texts[i], dims);
        list += openAi ? JsonObject().str("object", "embedding").raw("embedding", e).num("index", i).done()
                       : e;
    }
    list += ']';
    if (openAi) {
        c.respondJson(200, JsonObject()
                               .str("object", "list")
                               .raw("data", list)
                               .str("model", model)
                               .raw("usage", JsonObject()
                                                 .num("prompt_tokens", promptTokens)
                                                 .num("total_tokens", promptTokens)
                                                 .done())
                               .done());
        return;
    }
    c.respondJson(200, JsonObject()
                           .str("model", model)
                           .raw("embeddings", list)
                           .num("total_duration", qMax<qint64>(1, nowNs() - start))
                           .num("load_duration", 1000)
                           .num("prompt_eval_count", promptTokens)
                           .done());
}

// ---- benchmark and test helpers ---------------------------------------------------------------

qint64 queryInt(const http::RequestHead &h, const char *key, qint64 fallback)
{
    const QUrlQuery q(QString::fromLatin1(h.query));
    bool ok = false;
    const qint64 v = q.queryItemValue(QLatin1String(key)).toLongLong(&ok);
    return ok && v >= 0 ? v : fallback;
}

void bytes(Connection &c)
{
    const qint64 n = qMin<qint64>(queryInt(c.head(), "n", 0), qint64(1) << 40);
    static const QByteArray block = [] {
        QByteArray b(64 * 1024, '\0');
        for (qsizetype i = 0; i < b.size(); ++i)
            b[i] = char('a' + i % 26);
        return b;
    }();
    Connection::Stream st;
    st.contentType = "application/octet-stream";
    st.contentLength = n;
    st.count = int((n + block.size() - 1) / block.size());
    st.piece = [n, count = st.count](int i) -> QByteArray {
        if (i + 1 < count || n % block.size() == 0)
            return block;
        return block.left(n % block.size());
    };
    c.startStream(std::move(st));
}

void timedStream(Connection &c)
{
    const int n = int(qMin<qint64>(queryInt(c.head(), "n", 10), kMaxTokens));
    const qint64 delayUs = queryInt(c.head(), "delay_us", 0);
    const QByteArray pad(qMin<qint64>(queryInt(c.head(), "pad", 0), 1 << 20), 'x');
    Connection::Stream st;
    st.contentType = kNdjson;
    st.count = n;
    st.intervalUs = delayUs;
    // The timestamp is taken as the line is written, so a client can compute the delay added
    // by whatever sits between us.
    st.piece = [n, pad](int i) -> QByteArray {
        JsonObject o;
        o.num("i", i).num("n", n).num("t_us", realtimeUs());
        if (!pad.isEmpty())
            o.str("pad", pad);
        return o.done() + '\n';
    };
    c.startStream(std::move(st));
}

void stats(Connection &c)
{
    const Stats &s = c.server().stats();
    c.respondJson(200, JsonObject()
                           .num("requests", s.requests)
                           .num("connections_open", s.connectionsOpen)
                           .num("connections_total", s.connectionsTotal)
                           .num("active_streams", s.streamsActive)
                           .num("completed_streams", s.streamsCompleted)
                           .num("aborted_streams", s.streamsAborted)
                           .done());
}

void echo(Connection &c)
{
    QByteArray headers = "[";
    for (const http::Header &h : c.head().headers.list()) {
        if (headers.size() > 1)
            headers += ',';
        headers += "[" + jsonString(h.name) + "," + jsonString(h.value) + "]";
    }
    headers += ']';
    c.respondJson(200,
                  JsonObject()
                      .str("method", c.head().method)
                      .str("target", c.head().target)
                      .raw("headers", headers)
                      .num("body_size", c.body().size())
                      .str("body_sha256",
                           QCryptographicHash::hash(c.body(), QCryptographicHash::Sha256).toHex())
                      .done());
}

} // namespace

void handleRequest(Connection &c)
{
    const QByteArray &method = c.head().method;
    const QByteArray &path = c.head().path;
    const bool get = method == "GET";
    const bool getOrHead = get || method == "HEAD";
    const bool post = method == "POST";

    if (path == "/" && getOrHead)
        return c.respond(200, "text/plain; charset=utf-8", QByteArrayLiteral("Ollama is running"));
    if (path == "/api/version" && getOrHead)
        return c.respondJson(200, JsonObject().str("version", kVersion).done());
    if (path == "/api/tags" && getOrHead)
        return tags(c);
    if (path == "/api/ps" && get)
        return ps(c);
    if (post && path == "/api/chat")
        return chat(c, false);
    if (post && path == "/api/generate")
        return chat(c, true);
    if (post && path == "/api/show")
        return show(c);
    if (post && path == "/api/pull")
        return pull(c);
    if (post && path == "/api/embed")
        return embed(c, false, false);
    if (post && path == "/api/embeddings")
        return embed(c, true, false);
    if (method == "DELETE" && path == "/api/delete")
        return deleteModel(c);
    if (post && path == "/v1/chat/completions")
        return openAiChat(c);
    if (post && path == "/v1/embeddings")
        return embed(c, false, true);
    if (get && path == "/v1/models")
        return openAiModels(c, QString());
    if (get && path.startsWith("/v1/models/"))
        return openAiModels(c, QUrl::fromPercentEncoding(path.mid(11)));
    if (get && path == "/standin/bytes")
        return bytes(c);
    if (get && path == "/standin/stream")
        return timedStream(c);
    if (get && path == "/standin/stats")
        return stats(c);
    if (path == "/standin/echo")
        return echo(c);
    notFound(c);
}

} // namespace slullama::standin
