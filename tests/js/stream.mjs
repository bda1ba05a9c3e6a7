// Streams one chat completion through Switchyard with the official OpenAI SDK
// and prints what the SDK saw as one JSON line: {text, usage, finishReasons, model}.
// Settings come from the environment: SWITCHYARD_BASE_URL, SWITCHYARD_API_KEY, SWITCHYARD_MODEL.
import OpenAI from "openai";

const client = new OpenAI({
  baseURL: process.env.SWITCHYARD_BASE_URL,
  apiKey: process.env.SWITCHYARD_API_KEY,
  maxRetries: 0,
  timeout: 20_000,
});

const stream = await client.chat.completions.create({
  model: process.env.SWITCHYARD_MODEL,
  messages: [{ role: "user", content: "Hello!" }],
  stream: true,
  stream_options: { include_usage: true },
});

let text = "";
let usage = null;
let model = null;
const finishReasons = [];
for await (const chunk of stream) {
  model = chunk.model;
  for (const choice of chunk.choices) {
    text += choice.delta.content ?? "";
    if (choice.finish_reason) finishReasons.push(choice.finish_reason);
  }
  if (chunk.usage) usage = chunk.usage;
}
console.log(JSON.stringify({ text, usage, finishReasons, model }));
