// Real-browser tests of the Raccordo console, in Debian's Chromium driven by playwright-core
// and run by node's test runner. scripts/test-browser.sh starts the hub (`raccordo serve all`
// with the console) on a database and broker prefix of its own and sets the environment read
// below. The tests run in order, in one browser session, as an operator would work.

import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";
import { randomUUID } from "node:crypto";
import { chromium } from "playwright-core";

const need = (name) => {
  const value = process.env[name];
  assert.ok(value, `${name} is not set: run scripts/test-browser.sh`);
  return value;
};
const BASE = need("CONSOLE_URL");
const USER = need("CONSOLE_USER");
const VIEWER = need("CONSOLE_VIEWER");
const PRIVACY = need("CONSOLE_PRIVACY");
const PASSWORD = need("CONSOLE_PASSWORD");
const BIN = need("RACCORDO_BIN");
const CHROMIUM = need("CHROMIUM");
const SHOTS = need("SCREENSHOTS_DIR");
const WORK = need("WORK_DIR");

const TODAY = new Date().toISOString().slice(0, 10);
// A comune the registry does not know until the test imports it.
const NEW_COMUNE = "015998";
// A fictional family: its strings must never appear in the console.
const FAMILY = { name: "Famiglia Brontolini", address: "Via Pizzighettone 404", phone: "+39 340 5550404" };

let browser;
let page;

/** A page of a browser context of its own (its own cookies), logged in as `user`. */
async function sessionOf(user) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 860 }, locale: "it-IT" });
  const other = await context.newPage();
  await other.goto(BASE + "/login");
  await other.fill("#user", user);
  await other.fill("#password", PASSWORD);
  await other.click("button[type=submit]");
  await other.getByRole("heading", { name: "Panoramica" }).waitFor();
  return other;
}

function raccordo(args, input) {
  const run = spawnSync(BIN, args, { input, encoding: "utf8" });
  assert.equal(run.status, 0, `raccordo ${args.join(" ")}: ${run.stderr}`);
  return run.stdout;
}

function event(type, data) {
  return { specversion: "1.0", id: randomUUID(), source: "urn:raccordo:browser-test", type, data };
}

function publish(...events) {
  raccordo(["publish", "-"], events.map((e) => JSON.stringify(e)).join("\n") + "\n");
}

function importCsv(table, text) {
  const file = join(WORK, `${table}-${randomUUID()}.csv`);
  writeFileSync(file, text);
  raccordo(["import", table, file]);
}

async function shot(name) {
  mkdirSync(SHOTS, { recursive: true });
  await page.screenshot({ path: join(SHOTS, `${name}.png`) });
}

/** Reloads `path` until `check` passes (bounded to 20 s). */
async function eventually(path, check) {
  const deadline = Date.now() + 20_000;
  for (;;) {
    await page.goto(BASE + path);
    try {
      await check();
      return;
    } catch (error) {
      if (Date.now() > deadline) throw error;
      await page.waitForTimeout(250);
    }
  }
}

before(async () => {
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: [
      "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync",
    ],
  });
  const context = await browser.newContext({ viewport: { width: 1280, height: 860 }, locale: "it-IT" });
  page = await context.newPage();
  // Any request outside the console would break on a PA network without internet.
  page.on("request", (request) => {
    const url = request.url();
    assert.ok(url.startsWith(BASE) || url.startsWith("data:") || url === "about:blank", `request to ${url}`);
  });
});

after(async () => {
  await browser?.close();
});

test("an unauthenticated request gets the login page", async () => {
  const response = await page.goto(BASE + "/coverage");
  assert.equal(new URL(page.url()).pathname, "/login");
  assert.equal(response.status(), 200);
  const csp = response.headers()["content-security-policy"];
  assert.match(csp, /default-src 'self'/);
  assert.doesNotMatch(csp, /unsafe-inline/);
  await shot("login");
});

test("a wrong password is refused, the right one opens the overview", async () => {
  await page.fill("#user", USER);
  await page.fill("#password", "not the password");
  await page.click("button[type=submit]");
  await page.getByRole("alert").waitFor();
  await page.fill("#user", USER);
  await page.fill("#password", PASSWORD);
  await page.click("button[type=submit]");
  await page.getByRole("heading", { name: "Panoramica" }).waitFor();
  assert.equal(new URL(page.url()).pathname, "/");
  const cookies = await page.context().cookies();
  const session = cookies.find((c) => c.name === "raccordo_console");
  assert.ok(session?.httpOnly, "the session cookie is HttpOnly");
  assert.equal(session.sameSite, "Strict");
  await eventually("/", async () => {
    assert.match(await page.locator("main").innerText(), /Questo processo: pronto/);
  });
  await shot("overview");
});

test("a bad event appears as a dead letter, and opens with personal fields masked", async () => {
  publish(event("eviction.step.v1", {
    procedure_id: "RG-BROWSER-1/2026", step: "intimazione", occurred_on: TODAY,
    comune_istat: NEW_COMUNE, info_material_delivered: true,
    household: { ...FAMILY, members: 3, minors: 1, frail: false },
  }));
  await eventually("/dead-letters", async () => {
    assert.equal(await page.locator("#held tbody tr", { hasText: "eviction.step.v1" }).count(), 1);
  });
  assert.match(await page.locator("#held").innerText(), new RegExp(NEW_COMUNE));
  await shot("dead-letters");
  await page.locator("#held tbody tr", { hasText: "eviction.step.v1" }).getByRole("link").click();
  await page.getByRole("heading", { name: /Messaggio scartato/ }).waitFor();
  const body = await page.locator("#body").innerText();
  // The member is named, its value masked (HeldMessage::masked_body, as `dlq show`).
  assert.match(body, /"household"/);
  assert.match(body, new RegExp(`"comune_istat": "${NEW_COMUNE}"`));
  for (const value of Object.values(FAMILY)) {
    assert.ok(!body.includes(value), `${value} is masked`);
    assert.ok(!(await page.content()).includes(value), `${value} is nowhere on the page`);
  }
  await shot("dead-letter");
});

test("a replay without the CSRF token is refused", async () => {
  const refused = await page.request.post(BASE + "/dead-letters/action", {
    form: { action: "replay", holding: "all" },
    maxRedirects: 0,
  });
  assert.equal(refused.status(), 403);
  const wrong = await page.request.post(BASE + "/dead-letters/action", {
    form: { action: "purge", holding: "all", csrf: "0".repeat(64) },
    maxRedirects: 0,
  });
  assert.equal(wrong.status(), 403);
  await page.goto(BASE + "/dead-letters");
  assert.equal(await page.locator("#held tbody tr", { hasText: "eviction.step.v1" }).count(), 1);
});

test("after fixing the registry, a confirmed replay gets the dead letter processed", async () => {
  importCsv("comuni", `istat,nome,popolazione,zona_omogenea,ambito\n${NEW_COMUNE},Comune di Prova,1500,Sud Est,Prova\n`);
  await page.goto(BASE + "/dead-letters");
  await page.locator("#held tbody tr", { hasText: "eviction.step.v1" }).getByRole("link").click();
  await page.getByRole("link", { name: "Reinvia questo messaggio" }).click();
  await page.getByRole("heading", { name: "Conferma" }).waitFor();
  await shot("confirm");
  await page.getByRole("button", { name: "Sì, reinvia" }).click();
  await page.getByRole("status").waitFor();
  assert.match(await page.getByRole("status").innerText(), /1 messaggio reinviato/);
  assert.match(await page.locator("#actions").innerText(), new RegExp(`${USER}[\\s\\S]*reinvio`));
  await eventually("/evictions", async () => {
    assert.match(await page.locator("main").innerText(), /Comune di Prova/);
  });
  await eventually("/dead-letters", async () => {
    assert.equal(await page.locator("#held tbody tr", { hasText: "eviction.step.v1" }).count(), 0);
  });
});

test("replay-all of two messages that fail again reports 2 and replays each once", async () => {
  // Two housing units of a comune still unknown: dead-lettered, and again after a replay.
  const unknown = "015997";
  const unit = (id) => event("housing.unit.v1", {
    unit_id: id, action: "offered", comune_istat: unknown, address: "Via Nuova 1", places: 2,
    reception_kind: "CAS", building_type: "casa", owner_declaration: true,
  });
  publish(unit("BROWSER-SNAP-1"), unit("BROWSER-SNAP-2"));
  const held = () => page.locator("#held tbody tr", { hasText: "housing.unit.v1" });
  await eventually("/dead-letters", async () => {
    assert.equal(await held().count(), 2);
  });
  const before = await held().locator("a").evaluateAll((links) => links.map((a) => a.getAttribute("href")));
  await page.getByRole("link", { name: "Reinvia tutti" }).click();
  await page.getByRole("heading", { name: "Conferma" }).waitFor();
  await page.getByRole("button", { name: "Sì, reinvia" }).click();
  await page.getByRole("status").waitFor();
  assert.match(await page.getByRole("status").innerText(), /^2 messaggi reinviati\.$/);
  await shot("replay-all");
  // Each failed once more and is held anew (new ids), not replayed again behind the action.
  await eventually("/dead-letters", async () => {
    assert.equal(await held().count(), 2);
    const after = await held().locator("a").evaluateAll((links) => links.map((a) => a.getAttribute("href")));
    assert.ok(after.every((href) => !before.includes(href)), "held anew with new ids");
  });
  assert.match(await page.locator("#actions tbody tr").first().innerText(), new RegExp(`${USER}[\\s\\S]*operator[\\s\\S]*reinvio[\\s\\S]*tutti[\\s\\S]*2`));
  // Clean up for the tests that follow: one purge of one message, then of the other.
  for (let i = 0; i < 2; i += 1) {
    await held().first().getByRole("link").click();
    await page.getByRole("link", { name: "Elimina questo messaggio" }).click();
    await page.getByRole("button", { name: "Sì, elimina" }).click();
    assert.match(await page.getByRole("status").innerText(), /1 messaggio eliminato/);
    assert.equal(await held().count(), 1 - i);
  }
});

test("a viewer sees no dead-letter menu and gets the 403 page on an operator's route", async () => {
  const viewer = await sessionOf(VIEWER);
  const menu = await viewer.getByRole("navigation", { name: "Sezioni" }).innerText();
  assert.doesNotMatch(menu, /Messaggi scartati/);
  assert.doesNotMatch(menu, /Registro avvisi/);
  assert.match(menu, /Copertura/);
  assert.match(menu, /Tavolo asilo/);
  assert.equal(await viewer.locator('a[href^="/dead-letters"]').count(), 0, "no link to dead letters anywhere");
  const response = await viewer.goto(BASE + "/dead-letters");
  assert.equal(response.status(), 403);
  assert.match(await viewer.locator("main").innerText(), /Accesso negato: il ruolo «consultazione»/);
  await viewer.screenshot({ path: join(SHOTS, "viewer-403.png") });
  // An action posted by hand is refused too, CSRF token or not.
  await viewer.goto(BASE + "/");
  const csrf = await viewer.locator('input[name="csrf"]').first().inputValue();
  const refused = await viewer.request.post(BASE + "/dead-letters/action", {
    form: { action: "purge", holding: "all", csrf },
    maxRedirects: 0,
  });
  assert.equal(refused.status(), 403);
  const audit = await viewer.goto(BASE + "/evictions/audit");
  assert.equal(audit.status(), 403);
  await viewer.context().close();
});

test("a viewer reads the Tavolo asilo page: indicators against targets, charts drawn on the server", async () => {
  const viewer = await sessionOf(VIEWER);
  const response = await viewer.goto(BASE + "/tavolo");
  assert.equal(response.status(), 200);
  const main = await viewer.locator("main").innerText();
  assert.match(main, /Pronte accoglienze|pronte accoglienze/);
  assert.match(main, /obiettivo|Obiettivo|predefinito/);
  assert.ok((await viewer.locator("main svg").count()) >= 1, "charts are inline SVG");
  const bad = await viewer.goto(BASE + "/tavolo?year=999999");
  assert.equal(bad.status(), 400);
  await viewer.goto(BASE + "/tavolo");
  await viewer.screenshot({ path: join(SHOTS, "tavolo.png"), fullPage: true });
  await viewer.context().close();
});

test("a comune turns excluded after occupancy reports push it past 50% of its quota", async () => {
  await page.goto(BASE + "/coverage");
  const tile = () => page.locator('.tile[data-istat="015082"]');
  assert.equal(await tile().getAttribute("data-state"), "incluso");
  // Colturano: 1,952 inhabitants, a quota of 6; 3 CAS presences are half of it.
  publish(event("reception.occupancy.v1", {
    facility_id: "CAS-BROWSER-COLT", comune_istat: "015082", reception_kind: "CAS",
    capacity: 4, presences: 3, as_of: TODAY,
  }));
  await eventually("/coverage", async () => {
    assert.equal(await tile().getAttribute("data-state"), "escluso");
  });
  assert.match(await page.locator('#coverage tr[data-istat="015082"]').innerText(), /escluso[\s\S]*comune al 50%/);
  await shot("coverage");
  await tile().click();
  await page.getByRole("heading", { name: /Colturano/ }).waitFor();
  assert.match(await page.locator("#state").innerText(), /escluso/);
  await eventually("/coverage/015082", async () => {
    assert.match(await page.locator("#announcements").innerText(), /quota\.threshold[\s\S]*escluso dai bandi/);
  });
  assert.equal(await page.locator("svg.chart").count(), 1);
  await shot("comune");
  const csv = await page.request.get(BASE + "/coverage.csv");
  assert.equal(csv.status(), 200);
  assert.match(await csv.text(), /^istat,nome,zona,quota,coverage,ratio,excluded,rule/);
});

test("the routing preview of an eviction alert never lists an unscoped referent", async () => {
  importCsv("referents", [
    "referent_id,institution,role,email,name,comune_istat,ambito,zona",
    "ss-browser-unscoped,Regione di prova,servizi_sociali,sociale@regione.example,,,,",
    "ss-browser-zona,Zona Nord Ovest di prova,servizi_sociali,zona@nordovest.example,,,,Nord Ovest",
  ].join("\n") + "\n");
  await page.goto(BASE + "/routing");
  await page.selectOption("#comune", "015182");
  await page.selectOption("#kind", "eviction.alert");
  await page.getByRole("button", { name: "Mostra i destinatari" }).click();
  await page.locator("#recipients").waitFor();
  const ids = await page.locator("#recipients tr[data-referent]").evaluateAll((rows) => rows.map((r) => r.dataset.referent));
  assert.ok(ids.includes("ss-rho") && ids.includes("ss-ambito-rho"), `scoped referents: ${ids}`);
  assert.ok(!ids.includes("ss-browser-unscoped"), "never an unscoped referent");
  assert.ok(!ids.includes("ss-browser-zona"), "never a zona-wide referent");
  await shot("routing");
});

test("a referents file is compared with the registry before its import", async () => {
  await page.goto(BASE + "/routing");
  await page.setInputFiles("#csvfile", {
    name: "referenti.csv",
    mimeType: "text/csv",
    buffer: Buffer.from([
      "referent_id,institution,role,email,name,comune_istat,ambito,zona",
      "ss-browser-unscoped,Regione di prova,servizi_sociali,sociale@regione.example,,015182,,",
      "ss-browser-new,Comune di Arese,servizi_sociali,ss@arese.example,,015009,,",
    ].join("\n") + "\n"),
  });
  await page.waitForFunction(() => document.querySelector("#csv").value.includes("ss-browser-new"));
  await page.getByRole("button", { name: "Confronta con il registro" }).click();
  const diff = await page.locator("#diff").innerText();
  assert.match(diff, /Aggiunti \(1\)[\s\S]*ss-browser-new/);
  assert.match(diff, /Modificati \(1\)[\s\S]*ss-browser-unscoped[\s\S]*tutta l'area → comune Rho \(015182\)/);
  await page.locator("#diff").scrollIntoViewIfNeeded();
  await shot("routing-import");
});

test("an operator previews a CSV of housing units, sees its bad row, then publishes the good file", async () => {
  const header = "unit_id;action;comune_istat;address;places;reception_kind;building_type;owner_declaration";
  const good = [
    "BRW-1;offered;015146;Via Padova 1, Milano;4;CAS;appartamento;sì",
    "BRW-2;offered;015146;Via Padova 2, Milano;6;SPRAR;appartamento;sì",
  ];
  await page.goto(BASE + "/upload");
  await page.selectOption("#publisher", "comune_milano");
  await page.setInputFiles("#csvfile", {
    name: "alloggi.csv",
    mimeType: "text/csv",
    buffer: Buffer.from([header, ...good, "BRW-3;offered;015146;Via Padova 3, Milano;tante;CAS;appartamento;sì"].join("\n") + "\n"),
  });
  await page.waitForFunction(() => document.querySelector("#csv").value.includes("BRW-3"));
  await page.getByRole("button", { name: "Anteprima (non pubblica nulla)" }).click();
  const preview = await page.locator("#preview").innerText();
  assert.match(preview, /2 di 3 righe valide/);
  assert.match(preview, /4\s+places/);
  assert.ok(!preview.includes("tante"), "a cell's value is never repeated");
  assert.equal(await page.getByRole("button", { name: /Sì, pubblica/ }).count(), 0, "no publish for a bad file");
  await page.locator("#preview").scrollIntoViewIfNeeded();
  await shot("upload-preview");
  await page.fill("#csv", [header, ...good].join("\n") + "\n");
  await page.getByRole("button", { name: "Anteprima (non pubblica nulla)" }).click();
  await page.getByRole("button", { name: "Sì, pubblica 2 eventi come comune_milano" }).click();
  await page.getByText("2 eventi pubblicati").waitFor();
  await shot("upload-published");
});

test("the evictions page shows masked statistics, the privacy officer the aggregated audit, never a family", async () => {
  // A fictional family in Rho asks for help: its alerts go to the servizi sociali.
  const docket = "RG-BROWSER-2/2026";
  const household = { ...FAMILY, members: 2, minors: 0, frail: true };
  const step = (name) => event("eviction.step.v1", {
    procedure_id: docket, step: name, occurred_on: TODAY, comune_istat: "015182",
    info_material_delivered: true, household,
  });
  publish(step("intimazione"));
  publish(event("eviction.consent.v1", {
    procedure_id: docket, comune_istat: "015182", decision: "granted",
    recorded_by: "Sportello sociale di Rho", recorded_at: new Date().toISOString(),
    contact: { name: FAMILY.name, phone: FAMILY.phone },
  }));
  publish(step("convalida"));
  await eventually("/evictions", async () => {
    assert.match(await page.locator("main").innerText(), /Rho[\s\S]*<3/);
  });
  const html = await page.content();
  assert.equal(await page.locator("#audit").count(), 0, "no audit for an operator");
  for (const value of [docket, ...Object.values(FAMILY)]) {
    assert.ok(!html.includes(value), `${value} is not on the evictions page`);
  }
  await shot("evictions");
  const privacy = await sessionOf(PRIVACY);
  const menu = await privacy.getByRole("navigation", { name: "Sezioni" }).innerText();
  assert.match(menu, /Registro avvisi/);
  assert.doesNotMatch(menu, /Messaggi scartati/);
  await privacy.getByRole("link", { name: "Registro avvisi" }).click();
  const row = privacy.locator("#audit tbody tr", { hasText: "servizisociali@comune.rho.example" }).filter({ hasText: "eviction.alert" });
  const deadline = Date.now() + 20_000;
  while ((await row.count()) === 0 || !/<3[\s\S]*<3/.test(await row.first().innerText())) {
    assert.ok(Date.now() < deadline, "the alerts to Rho's office, delivered, counted as <3");
    await privacy.waitForTimeout(250);
    await privacy.reload();
  }
  assert.equal(await row.count(), 1, "one row per office, never one per family");
  const text = await privacy.content();
  for (const value of [docket, ...Object.values(FAMILY)]) {
    assert.ok(!text.includes(value), `${value} is not on the audit`);
  }
  await privacy.screenshot({ path: join(SHOTS, "evictions-audit.png") });
  const dead = await privacy.goto(BASE + "/dead-letters");
  assert.equal(dead.status(), 403, "dead letters are the operator's");
  await privacy.context().close();
});

test("the email gallery shows every kind, text and HTML side by side", async () => {
  await page.goto(BASE + "/emails");
  assert.equal(await page.locator("section.email").count(), 18);
  assert.equal(await page.locator("iframe.mailhtml").count(), 18);
  // quota.threshold: the frames load lazily, once scrolled into view.
  await page.locator("section.email").nth(8).evaluate((el) => el.scrollIntoView({ block: "start" }));
  const frame = page.frameLocator('iframe[src="/emails/quota.threshold/html"]');
  await frame.getByText("Melegnano").first().waitFor({ state: "attached" });
  await shot("emails");
});

test("the deliveries page filters and opens a notification's timeline", async () => {
  await page.goto(BASE + "/");
  await page.getByRole("link", { name: "Consegne" }).click();
  await page.getByRole("heading", { name: "Consegne", level: 1 }).waitFor();
  await page.fill("input[name=tipo]", "quota.threshold");
  await page.selectOption("select[name=stato]", "sent");
  await page.click("form.filters button[type=submit]");
  await page.waitForURL(/stato=sent/);
  const rows = page.locator("#deliveries tbody tr");
  assert.ok((await rows.locator("a").count()) > 0, "the threshold announcements were sent");
  // The kind's Italian name, with its code beside it.
  for (const kind of await page.locator("#deliveries tbody td:nth-child(2)").allTextContents()) {
    assert.equal(kind, "Soglia di coperturaquota.threshold");
  }
  for (const code of await page.locator("#deliveries tbody td:nth-child(2) code").allTextContents()) {
    assert.equal(code, "quota.threshold");
  }
  await shot("deliveries");
  await rows.first().locator("a").click();
  await page.getByRole("heading", { name: "Cronologia della notifica" }).waitFor();
  const events = await page.locator("ol.timeline li code").allTextContents();
  assert.deepEqual(events.slice(0, 2), ["queued", "sent"]);
  await shot("timeline");
});

test("the overview is readable on a phone", async () => {
  await page.setViewportSize({ width: 390, height: 844 });
  await page.goto(BASE + "/");
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth > window.innerWidth + 1);
  assert.equal(overflow, false, "no horizontal scrolling of the page");
  await shot("overview-phone");
  await page.setViewportSize({ width: 1280, height: 860 });
});

// Every page at a desktop's and a phone's size (issue 24): axe-core finds nothing, of any impact,
// and nothing is wider than the viewport. axe-core is evaluated in the page through the DevTools
// protocol, so the console's Content-Security-Policy stays as it is.
const AXE = readFileSync(createRequire(import.meta.url).resolve("axe-core/axe.min.js"), "utf8");
const SIZES = [
  { name: "desktop", viewport: { width: 1366, height: 900 } },
  { name: "phone", viewport: { width: 390, height: 844 } },
];

/** A page of a context of its own at `viewport`, logged in as `user` (none: not logged in). */
async function pageAt(viewport, user) {
  const context = await browser.newContext({ viewport, locale: "it-IT" });
  const other = await context.newPage();
  if (user) {
    await other.goto(BASE + "/login");
    await other.fill("#user", user);
    await other.fill("#password", PASSWORD);
    await other.click("button[type=submit]");
    await other.getByRole("heading", { name: "Panoramica" }).waitFor();
  }
  return other;
}

/** axe-core's violations on `p`, flattened: one per rule with its targets. */
async function axeViolations(p) {
  if (!(await p.evaluate(() => typeof window.axe === "object"))) await p.evaluate(AXE);
  return p.evaluate(async () => {
    // The email frames are sandboxed mail bodies (the mailer's), not console pages.
    const results = await window.axe.run(document, { iframes: false, resultTypes: ["violations"] });
    return results.violations.map((v) => ({
      id: v.id, impact: v.impact, help: v.help,
      targets: v.nodes.map((n) => n.target.join(" ")),
    }));
  });
}

/**
 * Words of a developer's English that must not reach a console page (issue 24): status words,
 * labels, placeholders, serialisation leftovers, the commonest function words. Chosen not to
 * catch Italian (no "no", "date", "come", "file", "email", "link", "password", "privacy", "ok").
 */
const ENGLISH = new Set([
  "delivered", "delivery", "deliveries", "granted", "revoked", "pending", "queued", "sent",
  "bounced", "bounce", "parked", "dead", "letter", "held", "failed", "failure", "error", "errors",
  "done", "click", "here", "please", "unknown", "undefined", "none", "some", "true", "false", "null",
  "status", "kind", "kinds", "queue", "queues", "replay", "replayed", "purge", "purged", "upload",
  "uploaded", "preview", "dashboard", "notification", "notifications", "event", "events",
  "message", "messages", "reason", "retry", "retries", "attempt", "attempts", "row", "rows",
  "column", "field", "value", "missing", "invalid", "expected", "required", "must", "should",
  "cannot", "not", "found", "forbidden", "unauthorized", "contract", "step", "time", "yes",
  "accepted", "rejected", "published", "received", "confirm", "cancel", "submit", "save", "delete",
  "back", "next", "previous", "page", "empty", "total", "count", "new", "show", "search", "filter",
  "type", "name", "unsubscribe", "opt", "optout", "ack", "acknowledged", "coverage",
  "routing", "referent", "referents", "eviction", "evictions", "housing", "offered", "alert",
  "user", "role", "operator", "viewer", "sign", "logged", "the", "and", "of", "to", "from", "with",
  "without", "is", "are", "was", "be", "for", "by", "at", "this", "that", "which", "or", "if", "any",
  "only", "see", "has", "have", "an",
]);

/**
 * The English words of `p`'s visible text (and of the names read aloud: aria-label, title,
 * placeholder, alt), each with its context; the text of code, kbd, samp, pre and
 * [translate=no] is left out: machine identifiers are allowed there.
 */
async function englishWords(p) {
  return p.evaluate((words) => {
    const english = new Set(words);
    const MACHINE = "code, kbd, samp, pre, [translate=no], script, style, template, noscript, textarea";
    const found = [];
    const scan = (text, where) => {
      const tokens = text.split(/\s+/).filter((t) => t && !t.includes("://"));
      tokens.forEach((token, i) => {
        for (const word of token.split(/[^\p{L}\p{N}_]+/u)) {
          if (english.has(word.toLowerCase())) {
            const context = tokens.slice(Math.max(0, i - 5), i + 6).join(" ");
            found.push(`${JSON.stringify(word)} in ${where}: “${context}”`);
          }
        }
      });
    };
    const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
      const el = node.parentElement;
      if (!el || el.closest(MACHINE) || !el.checkVisibility()) continue;
      scan(node.data, `<${el.tagName.toLowerCase()}${el.id ? "#" + el.id : ""}>`);
    }
    for (const el of document.querySelectorAll("[aria-label], [title], [placeholder], [alt], input[type=submit]")) {
      if (el.closest(MACHINE)) continue;
      for (const attr of ["aria-label", "title", "placeholder", "alt", "value"]) {
        if (attr === "value" && el.type !== "submit") continue;
        const value = el.getAttribute(attr);
        if (value) scan(value, `${attr} of <${el.tagName.toLowerCase()}>`);
      }
    }
    scan(document.title, "<title>");
    return found;
  }, [...ENGLISH]);
}

test("every page passes axe-core with 0 violations and fits the viewport, at 1366×900 and 390×844", async (t) => {
  // A held message to open and to confirm: a housing unit of a comune the registry does not know.
  publish(event("housing.unit.v1", {
    unit_id: "BROWSER-AXE-1", action: "offered", comune_istat: "015996", address: "Via Nuova 2",
    places: 2, reception_kind: "CAS", building_type: "casa", owner_declaration: true,
  }));
  const held = () => page.locator("#held tbody tr", { hasText: "housing.unit.v1" }).locator("a");
  await eventually("/dead-letters", async () => {
    assert.ok((await held().count()) >= 1);
  });
  const deadLetter = await held().first().getAttribute("href");
  await page.goto(BASE + "/deliveries");
  const delivery = await page.locator("#deliveries tbody a").first().getAttribute("href");
  assert.ok(deadLetter && delivery, "a held message and a delivery to open");

  const badUnits = [
    "unit_id;action;comune_istat;address;places;reception_kind;building_type;owner_declaration",
    "AXE-1;offered;015146;Via Padova 1, Milano;tante;CAS;appartamento;sì",
  ].join("\n") + "\n";
  const referents = [
    "referent_id,institution,role,email,name,comune_istat,ambito,zona",
    "ss-axe-new,Comune di Arese,servizi_sociali,ss@arese.example,,015009,,",
    "ss-axe-bad,Comune di Arese,servizi_sociali,non-un-indirizzo,,015009,,",
  ].join("\n") + "\n";
  const PAGES = [
    { who: null, path: "/login" },
    { who: null, path: "/ack/not-a-token" },
    { who: null, path: "/preferenze/not-a-token" },
    { who: USER, path: "/" },
    { who: USER, path: "/dead-letters" },
    { who: USER, path: deadLetter },
    { who: USER, path: "/dead-letters/confirm?action=replay&holding=all" },
    { who: USER, path: "/upload" },
    {
      who: USER, path: "/upload", name: "/upload (anteprima con una riga errata)",
      act: async (p) => {
        await p.fill("#csv", badUnits);
        await p.getByRole("button", { name: "Anteprima (non pubblica nulla)" }).click();
        await p.locator("#preview").waitFor();
      },
    },
    { who: USER, path: "/coverage" },
    { who: USER, path: "/coverage/015082" },
    { who: USER, path: "/routing" },
    { who: USER, path: "/routing?comune=015182&kind=eviction.alert" },
    {
      who: USER, path: "/routing", name: "/routing (confronto di un file di referenti)",
      act: async (p) => {
        await p.fill("#csv", referents);
        await p.getByRole("button", { name: "Confronta con il registro" }).click();
        await p.locator("#diff").waitFor();
      },
    },
    { who: USER, path: "/evictions" },
    { who: USER, path: "/tavolo" },
    { who: USER, path: "/emails" },
    { who: USER, path: "/deliveries" },
    { who: USER, path: delivery },
    { who: USER, path: "/pagina-che-non-esiste" },
    { who: VIEWER, path: "/" },
    { who: VIEWER, path: "/dead-letters", name: "/dead-letters (403 a un viewer)" },
    { who: PRIVACY, path: "/evictions/audit" },
  ];

  const problems = [];
  const english = [];
  const counts = [];
  for (const size of SIZES) {
    const sessions = new Map();
    for (const entry of PAGES) {
      if (!sessions.has(entry.who)) sessions.set(entry.who, await pageAt(size.viewport, entry.who));
      const p = sessions.get(entry.who);
      const name = entry.name ?? entry.path;
      const where = `${name} at ${size.viewport.width}×${size.viewport.height} (${entry.who ?? "not logged in"})`;
      const response = await p.goto(BASE + entry.path);
      assert.ok(response.status() < 500, `${where}: HTTP ${response.status()}`);
      if (entry.act) await entry.act(p);
      for (const word of await englishWords(p)) english.push(`${where}: ${word}`);
      const violations = await axeViolations(p);
      counts.push(`${size.name} ${name}: ${violations.length}`);
      for (const v of violations) {
        problems.push(`${where}: ${v.id} (${v.impact}) ${v.help}\n    ${v.targets.join("\n    ")}`);
      }
      const width = await p.evaluate(() => ({ page: document.documentElement.scrollWidth, viewport: window.innerWidth }));
      if (width.page > width.viewport) {
        // The outermost elements past the right edge that no scrolling box of theirs clips.
        // (An absolutely positioned one escapes its scrolling box; a long word overflows its box.)
        const wide = await p.evaluate(() => [...document.querySelectorAll("body *")]
          .filter((el) => el.getBoundingClientRect().right > window.innerWidth + 0.5 ||
            (el.scrollWidth > el.clientWidth + 1 && getComputedStyle(el).overflowX === "visible"))
          .filter((el) => {
            const escapes = ["absolute", "fixed"].includes(getComputedStyle(el).position);
            for (let a = el.parentElement; a && a !== document.body; a = a.parentElement) {
              if (!escapes && getComputedStyle(a).overflowX !== "visible") return false;
              if (a.getBoundingClientRect().right > window.innerWidth + 0.5) return false;
            }
            return true;
          })
          .slice(0, 5)
          .map((el) => `${el.tagName.toLowerCase()}${el.id ? "#" + el.id : ""}${el.className && typeof el.className === "string" ? "." + el.className.trim().split(/\s+/).join(".") : ""} (right ${Math.round(el.getBoundingClientRect().right)})`));
        problems.push(`${where}: ${width.page} px wide in a ${width.viewport} px viewport: ${wide.join(", ")}`);
      }
      if (entry.who === USER && ["/", "/dead-letters", "/coverage"].includes(entry.path)) {
        const page = entry.path === "/" ? "overview" : entry.path.slice(1);
        await p.screenshot({ path: join(SHOTS, `${page}-${size.viewport.width}x${size.viewport.height}.png`) });
      }
    }
    for (const p of sessions.values()) await p.context().close();
  }
  t.diagnostic(`axe-core violations per page: ${counts.join("; ")}`);
  assert.deepEqual(problems, [], `\n${problems.join("\n")}`);
  assert.deepEqual(english, [], `English UI words outside code, kbd, samp, pre and [translate=no]:\n${english.join("\n")}`);
});
