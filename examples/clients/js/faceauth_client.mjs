#!/usr/bin/env node
// A small client of the faceauth HTTP API (see examples/clients/README.md), for
// Node.js 18 or later: the built-in fetch, FormData and Blob, no npm dependencies.
//
// As a library:
//
//   import { FaceAuthClient } from "./faceauth_client.mjs";
//   const client = new FaceAuthClient("http://127.0.0.1:5000");
//   let answer = await client.enroll("alice", "id_card.jpg");       // multipart field cin_file
//   answer = await client.authenticate("alice", "selfie.jpg");      // multipart field auth_video
//   answer = await client.reset();                                  // admin: loopback, or a token
//   console.log(answer.status, answer.body, answer.outcome);
//
// As a command:
//
//   node faceauth_client.mjs --url http://127.0.0.1:5000 enroll alice id_card.jpg
//   node faceauth_client.mjs --url http://127.0.0.1:5000 authenticate alice selfie.jpg
//   node faceauth_client.mjs --url http://127.0.0.1:5000 reset
//
// The command prints the server's JSON answer on stdout and exits with
// 0 approved (or reset DONE), 1 no answer from the API (connection refused, timeout,
// a body that is not JSON), 2 usage error (bad arguments, unreadable file),
// 3 a decision REJECTED by the policy (HTTP 200), 4 a request the server refused
// (HTTP 4xx/5xx with the API's JSON: UNKNOWN_USER, USERNAME_ALREADY_EXISTS,
// SERVER_BUSY after the retries, 401/403 on reset, ...).
//
// A 503 answer with a Retry-After header (SERVER_BUSY: every face-analysis worker
// and the queue are full) is retried, after the time the header asks for (capped at
// maxRetryWait), up to `retries` times (3 by default).

import { readFile, realpath } from "node:fs/promises";
import { basename } from "node:path";
import { pathToFileURL } from "node:url";

export const DEFAULT_URL = "http://127.0.0.1:5000";

export const EXIT_APPROVED = 0;
export const EXIT_TRANSPORT = 1;
export const EXIT_USAGE = 2;
export const EXIT_REJECTED = 3;
export const EXIT_REFUSED = 4;

/** No answer of the API: the connection failed or timed out, or the answer is not JSON. */
export class TransportError extends Error {
  constructor(message, options) {
    super(message, options);
    this.name = "TransportError";
  }
}

/** One answer of the API: its HTTP status, its JSON body and the body's raw text. */
export class Answer {
  constructor(status, body, text) {
    this.status = status;
    this.body = body;
    this.text = text;
  }

  /** DecisionReason (enroll, authenticate) or msg (reset). */
  get reason() {
    return this.body.DecisionReason ?? this.body.msg ?? null;
  }

  /** "approved" (or reset DONE), "rejected" (a policy decision, HTTP 200) or
   * "refused" (HTTP 4xx/5xx: the request was not processed). */
  get outcome() {
    if (this.status !== 200) return "refused";
    const verdict = this.body.EnrollStatus ?? this.body.Decision;
    if (verdict === "APPROVED" || this.body.msg === "DONE") return "approved";
    return "rejected";
  }

  get approved() {
    return this.outcome === "approved";
  }
}

/** The three calls of the API. Each resolves to an Answer (a rejection is an answer,
 * not an exception) and rejects with a TransportError when there is none. */
export class FaceAuthClient {
  constructor(
    baseUrl = DEFAULT_URL,
    { adminToken = null, timeout = 120, retries = 3, maxRetryWait = 30, onRetry = null } = {},
  ) {
    this.baseUrl = baseUrl.replace(/\/+$/, "");
    this.adminToken = adminToken;
    this.timeout = timeout;
    this.retries = Math.max(0, retries);
    this.maxRetryWait = maxRetryWait;
    this.onRetry = onRetry;
  }

  /** POST /api/enroll?username=U with the ID-card image as cin_file. */
  enroll(username, idCardPath) {
    return this.#upload("/api/enroll", username, "cin_file", idCardPath);
  }

  /** POST /api/authentificate?username=U (sic) with a selfie image or a short video as auth_video. */
  authenticate(username, selfieOrVideoPath) {
    return this.#upload("/api/authentificate", username, "auth_video", selfieOrVideoPath);
  }

  /** POST /api/reset: removes every user. Without a token the server answers loopback
   * clients only; with --admin-token set on the server it wants
   * "Authorization: Bearer TOKEN" (adminToken here, else the client's). */
  reset(adminToken = null) {
    const token = adminToken ?? this.adminToken;
    const headers = token ? { Authorization: `Bearer ${token}` } : {};
    return this.#post("/api/reset", { headers });
  }

  async #upload(path, username, field, filePath) {
    // Read once: every retry sends the same bytes (the server detects the format
    // from them, not from the name or the content type).
    const data = await readFile(filePath);
    const name = basename(filePath) || "upload";
    const form = () => {
      const f = new FormData();
      f.append(field, new Blob([data], { type: "application/octet-stream" }), name);
      return f;
    };
    return this.#post(path, { query: { username }, form });
  }

  async #post(path, { query = null, headers = {}, form = null }) {
    const url = new URL(this.baseUrl + path);
    for (const [k, v] of Object.entries(query ?? {})) url.searchParams.set(k, v);
    const attempts = this.retries + 1;
    for (let attempt = 1; ; attempt++) {
      let response;
      let text;
      try {
        response = await fetch(url, {
          method: "POST",
          headers,
          body: form ? form() : undefined,
          signal: AbortSignal.timeout(this.timeout * 1000),
        });
        text = await response.text();
      } catch (e) {
        const cause = e.cause ? `: ${e.cause.message ?? e.cause}` : "";
        throw new TransportError(`POST ${url}: ${e.message}${cause}`, { cause: e });
      }
      const answer = toAnswer(response, text);
      let wait = retryAfter(response);
      if (response.status !== 503 || wait === null || attempt === attempts) return answer;
      wait = Math.min(wait, this.maxRetryWait);
      this.onRetry?.({ path, reason: answer.reason, wait, attempt: attempt + 1, attempts });
      await new Promise((resolve) => setTimeout(resolve, wait * 1000));
    }
  }
}

function toAnswer(response, text) {
  let body = null;
  try {
    body = JSON.parse(text);
  } catch {
    // not JSON: below
  }
  if (body === null || typeof body !== "object" || Array.isArray(body)) {
    const snippet = text.slice(0, 200).trim() || "an empty body";
    throw new TransportError(`HTTP ${response.status} from ${response.url} is not the API's JSON: ${snippet}`);
  }
  return new Answer(response.status, body, text.trim());
}

/** Seconds to wait from a Retry-After header (delay-seconds or an HTTP date), or null. */
function retryAfter(response) {
  const value = response.headers.get("retry-after")?.trim();
  if (value === undefined || value === "") return null;
  if (/^\d+$/.test(value)) return Number(value);
  const when = Date.parse(value);
  return Number.isNaN(when) ? null : Math.max(0, (when - Date.now()) / 1000);
}

const USAGE = `usage: node faceauth_client.mjs [--url URL] [--admin-token TOKEN] [--retries N] [--timeout S] COMMAND

commands:
  enroll USER FILE        enroll USER from an ID-card image (JPEG, PNG, WebP, BMP)
  authenticate USER FILE  authenticate USER with a selfie image or video (MP4, MOV, WebM)
  reset                   remove every user (admin)

options:
  --url URL            the server (default: $FACEAUTH_URL or ${DEFAULT_URL})
  --admin-token TOKEN  bearer token for reset (default: $FACEAUTH_ADMIN_TOKEN)
  --retries N          retries of a 503 with Retry-After (SERVER_BUSY) (default: 3)
  --timeout S          seconds to wait for an answer (default: 120)

Exit codes: 0 approved/DONE, 1 no answer from the API, 2 usage, 3 REJECTED by the
policy, 4 refused by the server (HTTP 4xx/5xx).`;

class UsageError extends Error {}

function parseArgs(argv) {
  const options = {
    url: process.env.FACEAUTH_URL || DEFAULT_URL,
    adminToken: process.env.FACEAUTH_ADMIN_TOKEN || null,
    retries: 3,
    timeout: 120,
  };
  const names = { "--url": "url", "--admin-token": "adminToken", "--retries": "retries", "--timeout": "timeout" };
  const positional = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === "-h" || arg === "--help") return { help: true };
    const [flag, inline] = arg.startsWith("--") && arg.includes("=") ? arg.split(/=(.*)/s) : [arg, undefined];
    if (flag in names) {
      const value = inline ?? argv[++i];
      if (value === undefined) throw new UsageError(`${flag} needs a value`);
      options[names[flag]] = value;
    } else if (arg.startsWith("-") && arg !== "-") {
      throw new UsageError(`unknown option ${arg}`);
    } else {
      positional.push(arg);
    }
  }
  for (const key of ["retries", "timeout"]) {
    const n = Number(options[key]);
    if (!Number.isFinite(n) || n < 0 || (key === "retries" && !Number.isInteger(n))) {
      throw new UsageError(`--${key} wants a non-negative number, not ${options[key]}`);
    }
    options[key] = n;
  }
  const [command, ...rest] = positional;
  const arity = { enroll: 2, authenticate: 2, authentificate: 2, reset: 0 };
  if (!(command in arity)) throw new UsageError(command ? `unknown command ${command}` : "a COMMAND is needed");
  if (rest.length !== arity[command]) {
    throw new UsageError(`${command} wants ${arity[command] ? "USER FILE" : "no arguments"}`);
  }
  return { ...options, command, args: rest };
}

export async function main(argv) {
  let options;
  try {
    options = parseArgs(argv);
  } catch (e) {
    if (!(e instanceof UsageError)) throw e;
    console.error(`${USAGE}\n\nfaceauth_client: ${e.message}`);
    return EXIT_USAGE;
  }
  if (options.help) {
    console.log(USAGE);
    return EXIT_APPROVED;
  }
  const client = new FaceAuthClient(options.url, {
    adminToken: options.adminToken,
    timeout: options.timeout,
    retries: options.retries,
    onRetry: ({ path, reason, wait, attempt, attempts }) =>
      console.error(`faceauth_client: ${path} ${reason} (HTTP 503): retrying in ${wait} s (attempt ${attempt} of ${attempts})`),
  });
  let answer;
  try {
    if (options.command === "enroll") answer = await client.enroll(...options.args);
    else if (options.command === "reset") answer = await client.reset();
    else answer = await client.authenticate(...options.args);
  } catch (e) {
    if (e instanceof TransportError) {
      console.error(`faceauth_client: ${e.message}`);
      return EXIT_TRANSPORT;
    }
    if (e?.code && e?.syscall) {
      // The file could not be read (ENOENT, EACCES, EISDIR, ...).
      console.error(`faceauth_client: ${e.message}`);
      return EXIT_USAGE;
    }
    throw e;
  }
  console.log(answer.text);
  if (answer.status !== 200) console.error(`faceauth_client: HTTP ${answer.status} ${answer.reason}`);
  return { approved: EXIT_APPROVED, rejected: EXIT_REJECTED, refused: EXIT_REFUSED }[answer.outcome];
}

// Run as a command (not when imported): this file is the script Node was given.
const script = process.argv[1] ? await realpath(process.argv[1]).catch(() => null) : null;
if (script && import.meta.url === pathToFileURL(script).href) {
  process.exitCode = await main(process.argv.slice(2));
}
