// Drives slullama-daemon with the `ollama` npm client, as a laptop script would.
// Env: SLULLAMA_URL (http://127.0.0.1:PORT), SLULLAMA_TOKEN. Prints one JSON line with what it
// saw; exits 1 with a message on the first thing that is not as the stand-in answers.
import { Ollama } from 'ollama'

const host = process.env.SLULLAMA_URL
const token = process.env.SLULLAMA_TOKEN
if (!host || !token) {
  console.error('client.mjs: set SLULLAMA_URL and SLULLAMA_TOKEN')
  process.exit(2)
}

function check(condition, what, value) {
  if (!condition) {
    throw new Error(`${what}: ${JSON.stringify(value)?.slice(0, 2000)}`)
  }
}

const ollama = new Ollama({ host, headers: { Authorization: `Bearer ${token}` } })
const seen = {}

// list (GET /api/tags): the first request also wakes the job.
const list = await ollama.list()
check(Array.isArray(list.models) && list.models.length > 0, 'list() models', list)
const model = list.models[0].name
seen.models = list.models.map((m) => m.name)

// chat, not streamed
const messages = [{ role: 'user', content: 'hello from node' }]
const chat = await ollama.chat({ model, messages, stream: false, options: { num_predict: 5 } })
check(chat.message?.role === 'assistant', 'chat() role', chat)
check(chat.message.content === 'tok0 tok1 tok2 tok3 tok4', 'chat() content', chat)
check(chat.done === true, 'chat() done', chat)
seen.chat = chat.message.content

// chat, streamed: parts arrive one by one and add up to the answer
const parts = []
for await (const part of await ollama.chat({ model, messages, stream: true, options: { num_predict: 6 } })) {
  parts.push(part)
}
check(parts.length === 7, 'streamed chat() part count (6 tokens + final)', parts.length)
check(parts.slice(0, -1).every((p) => p.done === false), 'streamed chat() parts not done', parts)
check(parts.at(-1).done === true, 'streamed chat() final part', parts.at(-1))
const streamed = parts.map((p) => p.message.content).join('')
check(streamed === 'tok0 tok1 tok2 tok3 tok4 tok5', 'streamed chat() content', streamed)
seen.chat_stream_parts = parts.length

// generate, not streamed and streamed
const gen = await ollama.generate({ model, prompt: 'why is the sky blue?', options: { num_predict: 3 } })
check(gen.response === 'tok0 tok1 tok2' && gen.done === true, 'generate()', gen)
let genText = ''
let genParts = 0
for await (const part of await ollama.generate({ model, prompt: 'again', stream: true, options: { num_predict: 4 } })) {
  genText += part.response
  genParts += 1
}
check(genText === 'tok0 tok1 tok2 tok3' && genParts === 5, 'streamed generate()', { genText, genParts })
seen.generate = gen.response

// an unknown model: the client sees Ollama's own error through the proxy
try {
  await ollama.chat({ model: 'no-such-model:1b', messages, stream: false })
  check(false, 'chat() with an unknown model should fail', null)
} catch (e) {
  check(e.status_code === 404 && /not found/.test(e.error ?? e.message), 'unknown model error', { status: e.status_code, error: e.error ?? e.message })
  seen.unknown_model_status = e.status_code
}

// a wrong token: 401 from slullama, before any model server
const intruder = new Ollama({ host, headers: { Authorization: 'Bearer not-the-token' } })
try {
  await intruder.list()
  check(false, 'list() with a wrong token should fail', null)
} catch (e) {
  check(e.status_code === 401, 'wrong token status', { status: e.status_code, error: e.error ?? e.message })
  seen.wrong_token_status = e.status_code
}

console.log(JSON.stringify(seen))
