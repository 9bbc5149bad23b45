// The seed's event system (docs: /work/shared/seed/phase-05-event-system.md) as a baseline for the load suite:
// EventEmitter2 as the central hub, Bull on Redis for webhook delivery with retries.
//
// It implements the subset the load suite compares:
//   POST /api/keys                      admin token → an org key            (same shape as Switchboard)
//   POST /api/events                    publish; 201 with the event JSON    (same request/response shape)
//   POST /api/webhooks                  subscription {name,url,events,retryConfig,secret} → 201 {id,...}
//   POST /api/webhooks/:id/redrive      retry the subscription's failed (dead) Bull jobs
//   GET  /health/ready                  200
// An event is answered after the hub's listeners finished: persisted (RPUSH to a Redis list, the "event
// history") and its webhook jobs added to Bull. Redis persistence is whatever the local Redis is configured for
// (no fsync per event), so this is a weaker durability promise than Switchboard's fsync before 201.
//
// Delivery follows the seed's WebhookDelivery: one Bull queue, jobId `${subscription}:${event}`, priority by type,
// removeOnComplete, keep failures, the seed's X-EHRConnect-* headers and `sha256=` HMAC of the body, a 10 s timeout.
// Retries: the seed says "2s, 4s, 8s, 16s, 32s, max 5 retry attempts", but its code (attempts: 5, Bull's built-in
// exponential backoff with delay 2000) would give 4 retries after 2, 6, 14 and 30 s (Bull computes
// (2^n − 1) × delay). To run the schedule the seed states (and that Switchboard runs), this uses a custom Bull
// backoff strategy: initialDelay × 2^(n−1), attempts = 1 + retries, both from the subscription's retryConfig.
"use strict";

const http = require("node:http");
const crypto = require("node:crypto");
const { EventEmitter2 } = require("eventemitter2");
const Queue = require("bull");

const PORT = Number(process.env.PORT || 8090);
const ADMIN_TOKEN = process.env.ADMIN_TOKEN || "change-me";
const REDIS_URL = process.env.REDIS_URL || "redis://127.0.0.1:6379";
const PREFIX = process.env.BULL_PREFIX || `baseline-${process.pid}`;
const CONCURRENCY = Number(process.env.WEBHOOK_CONCURRENCY || 64);

const keys = new Map(); // key -> orgId
const subscriptions = new Map(); // id -> subscription
const hub = new EventEmitter2({ wildcard: true, delimiter: ".", maxListeners: 100 });

const queue = new Queue("webhooks", REDIS_URL, {
  prefix: PREFIX,
  settings: {
    backoffStrategies: {
      // The seed's stated schedule: initialDelay × 2^(n−1) (or × n for linear).
      seed: (attemptsMade, err, options) =>
        options.backoffType === "linear"
          ? options.initialDelay * attemptsMade
          : options.initialDelay * 2 ** (attemptsMade - 1),
    },
  },
});
const redis = queue.client; // the queue's own connection also stores the event history

// ---- the hub's listeners (seed: automatic persistence, webhook delivery) ----

hub.on("**", async function persist(event) {
  // The seed persists every event; here a Redis list per org stands for the event table.
  event.seq = await redis.rpush(`${PREFIX}:events:${event.orgId}`, JSON.stringify(event));
});

const PRIORITY = { "hl7.error": 1, "fhir.deleted": 1, "hl7.received": 2, "fhir.created": 2, "fhir.updated": 3 };

function matches(sub, event) {
  if (!sub.active || sub.orgId !== event.orgId) return false;
  return sub.events.some(
    (p) => p === "**" || p === event.eventType || (p.endsWith(".**") && event.eventType.startsWith(p.slice(0, -2))),
  );
}

hub.on("**", async function enqueueWebhooks(event) {
  const jobs = [];
  for (const sub of subscriptions.values()) {
    if (!matches(sub, event)) continue;
    const retry = sub.retryConfig;
    jobs.push(
      queue.add(
        { subscriptionId: sub.id, subscriptionUrl: sub.url, event, secret: sub.secret, headers: sub.headers },
        {
          jobId: `${sub.id}:${event.id}`,
          priority: PRIORITY[event.eventType] || 5,
          attempts: 1 + retry.maxAttempts,
          backoff: { type: "seed", options: { backoffType: retry.backoffType, initialDelay: retry.initialDelay } },
          removeOnComplete: true,
          removeOnFail: false,
        },
      ),
    );
  }
  await Promise.all(jobs);
});

// ---- delivery (seed: WebhookDelivery.deliver) ----

queue.process(CONCURRENCY, async (job) => {
  const payload = JSON.stringify(job.data.event);
  const signature = "sha256=" + crypto.createHmac("sha256", job.data.secret).update(payload).digest("hex");
  const response = await fetch(job.data.subscriptionUrl, {
    method: "POST",
    headers: {
      "Content-Type": "application/json",
      "X-EHRConnect-Signature": signature,
      "X-EHRConnect-Event": job.data.event.eventType,
      "X-EHRConnect-Delivery": job.data.event.id,
      ...job.data.headers,
    },
    body: payload,
    signal: AbortSignal.timeout(10000),
  });
  if (!response.ok) throw new Error(`HTTP ${response.status}: ${response.statusText}`);
});

// ---- HTTP API ----

function send(res, status, body) {
  const text = JSON.stringify(body);
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(text) });
  res.end(text);
}
const error = (res, status, code, message) => send(res, status, { error: { code, message } });

function readJson(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", () => {
      try {
        resolve(chunks.length ? JSON.parse(Buffer.concat(chunks).toString("utf8")) : {});
      } catch (e) {
        reject(e);
      }
    });
    req.on("error", reject);
  });
}

function caller(req) {
  const token = (req.headers.authorization || "").replace(/^Bearer /, "");
  if (token === ADMIN_TOKEN) return { admin: true };
  const orgId = keys.get(token);
  return orgId ? { orgId } : null;
}

async function publish(req, res, who) {
  const body = await readJson(req);
  if (typeof body.eventType !== "string" || !/^[a-z0-9]+(\.[a-z0-9_-]+)+$/.test(body.eventType)) {
    return error(res, 400, "invalid_event_type", "eventType is not a valid event type");
  }
  const orgId = who.admin ? body.orgId : who.orgId;
  if (!orgId) return error(res, 400, "invalid_event", "orgId is required with an admin key");
  const event = {
    id: crypto.randomUUID(),
    seq: 0,
    specVersion: "1.0",
    eventType: body.eventType,
    timestamp: new Date().toISOString(),
    orgId,
    source: "api",
    ...(body.messageType && { messageType: body.messageType }),
    ...(body.messageControlId && { messageControlId: body.messageControlId }),
    ...(body.resourceType && { resourceType: body.resourceType }),
    ...(body.resourceId && { resourceId: body.resourceId }),
    data: body.data ?? {},
    ...(body.metadata && { metadata: body.metadata }),
  };
  // emitAsync resolves when every listener has finished: persisted and queued.
  await hub.emitAsync(event.eventType, event);
  res.setHeader("location", `/api/events/${event.id}`);
  send(res, 201, event);
}

async function createSubscription(req, res, who) {
  const body = await readJson(req);
  const orgId = who.admin ? body.orgId : who.orgId;
  if (!orgId || typeof body.url !== "string" || !Array.isArray(body.events)) {
    return error(res, 400, "invalid_webhook", "orgId, url and events are required");
  }
  const sub = {
    id: crypto.randomUUID(),
    orgId,
    name: body.name || "",
    url: body.url,
    events: body.events,
    secret: body.secret || "whsec_" + crypto.randomBytes(32).toString("base64"),
    active: body.active !== false,
    retryConfig: { maxAttempts: 5, backoffType: "exponential", initialDelay: 2000, ...body.retryConfig },
    headers: body.headers || {},
    createdAt: new Date().toISOString(),
  };
  subscriptions.set(sub.id, sub);
  send(res, 201, sub);
}

async function redrive(res, id) {
  const failed = await queue.getFailed();
  const mine = failed.filter((job) => job && job.data.subscriptionId === id);
  await Promise.all(mine.map((job) => job.retry()));
  send(res, 200, { redriven: mine.length });
}

const server = http.createServer(async (req, res) => {
  try {
    const url = new URL(req.url, "http://localhost");
    if (req.method === "GET" && url.pathname === "/health/ready") return send(res, 200, { status: "ready" });
    const who = caller(req);
    if (!who) return error(res, 401, "unauthorized", "missing or unknown API key");
    if (req.method === "POST" && url.pathname === "/api/events") return await publish(req, res, who);
    if (req.method === "POST" && url.pathname === "/api/keys") {
      if (!who.admin) return error(res, 403, "forbidden", "this needs an admin key");
      const body = await readJson(req);
      const key = "sb_" + crypto.randomBytes(24).toString("base64url");
      keys.set(key, body.orgId);
      return send(res, 201, { id: crypto.randomUUID(), orgId: body.orgId, name: body.name, key });
    }
    if (req.method === "POST" && url.pathname === "/api/webhooks") return await createSubscription(req, res, who);
    const m = url.pathname.match(/^\/api\/webhooks\/([^/]+)\/redrive$/);
    if (req.method === "POST" && m) return await redrive(res, m[1]);
    return error(res, 404, "not_found", "route not found");
  } catch (e) {
    return error(res, 500, "internal", String(e && e.message));
  }
});
server.keepAliveTimeout = 65000;
server.listen(PORT, "127.0.0.1", () => console.error(`baseline listening on 127.0.0.1:${PORT} (bull prefix ${PREFIX})`));

async function shutdown() {
  server.close();
  await queue.close();
  process.exit(0);
}
process.on("SIGTERM", shutdown);
process.on("SIGINT", shutdown);
