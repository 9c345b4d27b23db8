/*
 * tests/browser/seatmap.cjs SCENARIO OUT_DIR: the web app (SPEC §8) in headless Chromium
 * (Debian's /usr/bin/chromium driven by puppeteer-core), against the servers that
 * tests/browser/run.sh started. It drives the page only through the automation hooks of
 * SPEC §8 (data-seat-id, data-available, data-held, data-action, data-reservation-id,
 * data-role="status") and saves a screenshot of every step in OUT_DIR. Exit 0: the
 * scenario passed; 1: it failed (the reason on stderr, with the page's console).
 *
 * Environment (run.sh sets it): BROWSER_NODE_MODULES (where puppeteer-core is installed),
 * CHROMIUM, RESERVED_A and RESERVED_B (two reserved processes, host:port), PERF (a
 * performance of 40 seats, 10 a row, the first 10 VIP), PAY_URL (fakepay), HOLD_TTL_S.
 */
'use strict';
const path = require('path');
const fs = require('fs');

const puppeteer = require(path.join(process.env.BROWSER_NODE_MODULES, 'puppeteer-core'));

const [scenario, outDir] = process.argv.slice(2);
const A = 'http://' + process.env.RESERVED_A;
const B = 'http://' + process.env.RESERVED_B;
const PERF = Number(process.env.PERF);
const PAY = process.env.PAY_URL;
const PASSWORD = 'browser-password-1';
const tag = Date.now().toString(36);

let browser;
let step = 0;
const pageErrors = [];
const consoleLines = [];

function log(msg) {
  process.stdout.write(`[${scenario}] ${msg}\n`);
}

class Fail extends Error {}
function check(cond, msg) {
  if (!cond) throw new Fail(msg);
}

async function shot(page, name) {
  step += 1;
  const file = path.join(outDir, `${String(step).padStart(2, '0')}-${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  log(`screenshot ${file}`);
}

/* A buyer: a page of its own (own browser context: own storage) on one reserved. */
async function openBuyer(who, base, width, height) {
  const ctx = await browser.createBrowserContext();
  const page = await ctx.newPage();
  await page.setViewport({ width: width || 1280, height: height || 800 });
  page.on('pageerror', (e) => pageErrors.push(`${who}: ${e.message}`));
  page.on('console', (m) => consoleLines.push(`${who} console.${m.type()}: ${m.text()}`));
  page.on('requestfailed', (r) => {
    // an event stream the test closes by navigating is not a failure
    if (!r.url().includes('/events')) consoleLines.push(`${who} request failed: ${r.url()}`);
  });
  page.who = who;
  await page.goto(`${base}/?performance=${PERF}`, { waitUntil: 'load' });
  await page.waitForSelector('[data-seat-id]', { timeout: 5000 });
  return page;
}

async function status(page) {
  return page.$eval('[data-role="status"]', (e) => e.textContent);
}

/* Waits until the status element shows CODE; fails with what it shows instead. */
async function waitStatus(page, code, timeout) {
  try {
    await page.waitForFunction(
      (c) => (document.querySelector('[data-role="status"]').textContent || '').includes(c),
      { timeout: timeout || 5000 }, code);
  } catch (e) {
    throw new Fail(`${page.who}: status never showed ${code}; it shows "${await status(page)}"`);
  }
  const text = await status(page);
  log(`${page.who} status: ${text}`);
  return text;
}

async function fill(page, form, fields) {
  for (const [name, value] of Object.entries(fields)) {
    const sel = `form:has([data-action="${form}"]) input[name="${name}"]`;
    await page.$eval(sel, (e) => { e.value = ''; });
    await page.type(sel, value);
  }
}

async function signup(page, name, email) {
  await fill(page, 'signup', { name, email, password: PASSWORD });
  await page.click('[data-action="signup"]');
  await waitStatus(page, 'SIGNED_UP');
}

async function login(page, email, password) {
  await fill(page, 'login', { email, password });
  await page.click('[data-action="login"]');
}

function seatSel(id) {
  return `[data-seat-id="${id}"]`;
}

async function seatState(page, id) {
  return page.$eval(seatSel(id), (e) => ({ available: e.dataset.available, held: e.dataset.held }));
}

/* Waits until seat ID shows available/held as wanted; resolves to the ms it took. */
async function waitSeat(page, id, want, timeout) {
  const t0 = Date.now();
  try {
    await page.waitForFunction((sel, w) => {
      const e = document.querySelector(sel);
      return e && (w.available === undefined || e.dataset.available === w.available) &&
        (w.held === undefined || e.dataset.held === w.held);
    }, { timeout, polling: 20 }, seatSel(id), want);
  } catch (e) {
    throw new Fail(`${page.who}: seat ${id} did not become ${JSON.stringify(want)} within ${timeout} ms: ` +
      `it is ${JSON.stringify(await seatState(page, id))}`);
  }
  return Date.now() - t0;
}

async function seatIds(page) {
  return page.$$eval('[data-seat-id]', (es) => es.map((e) => Number(e.dataset.seatId)));
}

async function pick(page, ids) {
  for (const id of ids) {
    await page.click(seatSel(id));
    const pressed = await page.$eval(seatSel(id), (e) => e.getAttribute('aria-pressed'));
    check(pressed === 'true', `${page.who}: seat ${id} is not selected after a click`);
  }
}

async function click(page, action) {
  await page.waitForSelector(`[data-action="${action}"]:not([disabled])`, { timeout: 5000 });
  await page.click(`[data-action="${action}"]`);
}

async function waitLive(page) {
  try {
    await page.waitForSelector('[data-role="live"][data-state="on"]', { timeout: 5000 });
  } catch (e) {
    throw new Fail(`${page.who}: the seat event stream (GET /performances/${PERF}/events) never opened`);
  }
}

async function payConfig(declineRate) {
  const r = await fetch(PAY + '/admin/config', {
    method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ declineRate }),
  });
  check(r.ok, `fakepay /admin/config answered ${r.status}`);
}

/* ---- scenarios ---- */

/* The files: public, typed, 404 for others; the deep link opens the map; it fits a
 * phone's width and a laptop's. */
async function appBasics() {
  for (const [p, type] of [['/', 'text/html'], ['/app/index.html', 'text/html'], ['/app/app.js', 'text/javascript'],
    ['/app/app.css', 'text/css']]) {
    const r = await fetch(A + p);
    check(r.status === 200, `GET ${p} without a token: ${r.status}, want 200`);
    check((r.headers.get('content-type') || '').startsWith(type),
      `GET ${p}: Content-Type ${r.headers.get('content-type')}, want ${type}`);
  }
  for (const p of ['/app/nope.js', '/app/', '/app']) {
    const r = await fetch(A + p);
    check(r.status === 404, `GET ${p}: ${r.status}, want 404`);
  }
  const html = await (await fetch(A + '/')).text();
  check(!/(src|href)=["']https?:/.test(html), 'index.html loads something from outside the server');

  const page = await openBuyer('desktop', A);
  const n = (await seatIds(page)).length;
  check(n === 40, `the seat map shows ${n} seats, want 40`);
  const title = await page.$eval('#map-h', (e) => e.textContent);
  check(title === 'Evening concert', `the deep link opened "${title}"`);
  const vip = await page.$$eval('[data-seat-id][data-type="VIP"]', (es) => es.length);
  check(vip === 10, `${vip} VIP seats shown, want 10`);
  const hover = await page.$eval('[data-seat-id]', (e) => e.title);
  check(/KRW/.test(hover), `a seat's hover text has no price: "${hover}"`);
  const listed = (n) => page.waitForFunction(
    (k) => document.querySelectorAll('[data-performance-id]').length === k, { timeout: 3000 }, n)
    .catch(() => { throw new Fail(`the performance list never showed ${n} performances`); });
  await listed(2);
  await shot(page, 'desktop-1280x800');
  await page.type('#search-q', 'matin');
  await page.click('[data-action="search"]');
  await listed(1);
  const found = await page.$eval('[data-performance-id] .t', (e) => e.textContent);
  check(found === 'Matinee', `the search for "matin" found "${found}"`);

  const phone = await openBuyer('phone', A, 375, 740);
  const overflow = await phone.evaluate(() => document.documentElement.scrollWidth);
  check(overflow <= 375, `at 375 px the page is ${overflow} px wide (scrolls sideways)`);
  const seatBox = await phone.$eval('[data-seat-id]', (e) => e.getBoundingClientRect().width);
  check(seatBox >= 12, `at 375 px a seat is ${seatBox} px wide`);
  await shot(phone, 'phone-375');
  check(pageErrors.length === 0, 'errors in the page: ' + pageErrors.join('; '));
}

/* Login and sign-up errors are shown as text; sign-up, logout, login work. */
async function loginErrors() {
  const page = await openBuyer('buyer', A);
  const email = `ann.${tag}@example.test`;
  await login(page, email, PASSWORD);
  await waitStatus(page, 'BAD_CREDENTIALS');
  await shot(page, 'unknown-user');
  await fill(page, 'signup', { name: 'Ann', email, password: 'short' });
  await page.click('[data-action="signup"]');
  await waitStatus(page, 'BAD_REQUEST');
  await shot(page, 'short-password');
  await signup(page, 'Ann', email);
  check(await page.$eval('#login-form', (e) => e.hidden), 'the login form is still shown after sign-up');
  await click(page, 'logout');
  await waitStatus(page, 'LOGGED_OUT');
  await fill(page, 'signup', { name: 'Ann again', email, password: PASSWORD });
  await page.click('[data-action="signup"]');
  await waitStatus(page, 'EMAIL_TAKEN');
  await login(page, email, 'wrong-password-1');
  const text = await waitStatus(page, 'BAD_CREDENTIALS');
  check(/wrong email or password/i.test(text), `BAD_CREDENTIALS without a clear text: "${text}"`);
  await shot(page, 'wrong-password');
  await login(page, email, PASSWORD);
  await waitStatus(page, 'LOGGED_IN');
  const token = await page.evaluate(() => JSON.parse(sessionStorage.getItem('bk.session')).token);
  check(/^[0-9a-f]{64}$/.test(token), 'no token kept in sessionStorage after login');
  await shot(page, 'logged-in');
  check(pageErrors.length === 0, 'errors in the page: ' + pageErrors.join('; '));
}

/* The purchase limit (2 in this run) and a declined payment are shown as text; a
 * booking shows in my reservations and its cancel frees the seat. */
async function limitPayment() {
  const page = await openBuyer('buyer', A);
  await signup(page, 'Bo', `bo.${tag}@example.test`);
  const ids = await seatIds(page);
  await pick(page, ids.slice(20, 23));
  await click(page, 'book');
  const lim = await waitStatus(page, 'LIMIT_EXCEEDED');
  check(/more seats than/i.test(lim), `LIMIT_EXCEEDED without a clear text: "${lim}"`);
  await shot(page, 'limit-exceeded');
  await click(page, 'clear');
  await payConfig(1);
  await pick(page, [ids[24]]);
  await click(page, 'book');
  const dec = await waitStatus(page, 'PAYMENT_DECLINED');
  check(/declined/i.test(dec), `PAYMENT_DECLINED without a clear text: "${dec}"`);
  await waitSeat(page, ids[24], { available: 'true' }, 3000);
  await shot(page, 'payment-declined');
  await payConfig(0);
  await click(page, 'book');
  await waitStatus(page, 'BOOKED');
  await waitSeat(page, ids[24], { available: 'false', held: 'none' }, 3000);
  await page.waitForSelector('[data-reservation-id] [data-action="cancel"]', { timeout: 5000 });
  await shot(page, 'booked');
  await page.click('[data-reservation-id] [data-action="cancel"]');
  await waitStatus(page, 'CANCELLED');
  await waitSeat(page, ids[24], { available: 'true', held: 'none' }, 3000);
  await page.waitForFunction(() => !document.querySelector('[data-reservation-id] [data-action="cancel"]'),
    { timeout: 3000 });
  await shot(page, 'cancelled');
  check(pageErrors.length === 0, 'errors in the page: ' + pageErrors.join('; '));
}

/* Two buyers on two reserved processes: A holds and books, B sees it live (within 1 s,
 * no reload) and gets SEAT_TAKEN for a seat it had picked. */
async function twoBuyers() {
  const a = await openBuyer('A', A);
  const b = await openBuyer('B', B);
  await signup(a, 'Alice', `alice.${tag}@example.test`);
  await signup(b, 'Bob', `bob.${tag}@example.test`);
  await waitLive(a);
  await waitLive(b);
  const ids = await seatIds(a);
  const [s1, s2] = [ids[4], ids[5]];
  await pick(b, [s1]);
  await pick(a, [s1, s2]);
  await shot(b, 'b-picked');
  await click(a, 'hold');
  await waitStatus(a, 'HELD');
  check(!(await a.$eval('[data-role="countdown"]', (e) => e.hidden)), 'A: no countdown after the hold');
  for (const id of [s1, s2]) await waitSeat(a, id, { available: 'false', held: 'mine' }, 1000);
  const heldMs = Math.max(await waitSeat(b, s1, { available: 'false', held: 'other' }, 1000),
    await waitSeat(b, s2, { available: 'false', held: 'other' }, 1000));
  log(`B saw A's hold in ${heldMs} ms (after A's page showed HELD)`);
  await shot(a, 'a-held');
  await shot(b, 'b-sees-held');
  await click(a, 'book');
  await waitStatus(a, 'BOOKED');
  const soldMs = Math.max(await waitSeat(b, s1, { available: 'false', held: 'none' }, 1000),
    await waitSeat(b, s2, { available: 'false', held: 'none' }, 1000));
  log(`B saw A's booking in ${soldMs} ms (after A's page showed BOOKED)`);
  await a.waitForSelector('[data-reservation-id]', { timeout: 5000 });
  await shot(a, 'a-booked');
  await shot(b, 'b-sees-sold');
  await click(b, 'hold');
  const taken = await waitStatus(b, 'SEAT_TAKEN');
  check(taken.includes('R1-5') || /someone else/i.test(taken), `SEAT_TAKEN without a clear text: "${taken}"`);
  await shot(b, 'b-seat-taken');
  // every state at once on B's page: sold (A's), held by A, held by B with its countdown
  await pick(a, [ids[14], ids[15]]);
  await click(a, 'hold');
  await waitStatus(a, 'HELD');
  await waitSeat(b, ids[15], { available: 'false', held: 'other' }, 1000);
  await pick(b, [ids[22], ids[23], ids[24]]);
  await click(b, 'hold');
  await waitStatus(b, 'HELD');
  for (const id of [ids[22], ids[23], ids[24]]) await waitSeat(b, id, { held: 'mine' }, 1000);
  await waitSeat(a, ids[24], { available: 'false', held: 'other' }, 1000);
  await shot(b, 'b-seatmap');
  // B lets its hold go (DELETE /holds/{id}): free again on both pages
  await click(b, 'release');
  await waitStatus(b, 'RELEASED');
  for (const id of [ids[22], ids[23], ids[24]]) {
    await waitSeat(b, id, { available: 'true', held: 'none' }, 1000);
    await waitSeat(a, id, { available: 'true', held: 'none' }, 1000);
  }
  check(await b.$eval('[data-role="countdown"]', (e) => e.hidden), 'B: the countdown is still shown');
  await shot(a, 'a-sees-released');
  check(pageErrors.length === 0, 'errors in the page: ' + pageErrors.join('; '));
}

/* The same without holds: A books at once, B sees it live and gets SEAT_TAKEN. */
async function liveBooking() {
  const a = await openBuyer('A', A);
  const b = await openBuyer('B', B);
  await signup(a, 'Alice', `alice.${tag}@example.test`);
  await signup(b, 'Bob', `bob.${tag}@example.test`);
  await waitLive(a);
  await waitLive(b);
  const ids = await seatIds(a);
  const [s1, s2] = [ids[6], ids[7]];
  await pick(b, [s1]);
  await pick(a, [s1, s2]);
  await click(a, 'book');
  await waitStatus(a, 'BOOKED');
  const soldMs = Math.max(await waitSeat(b, s1, { available: 'false', held: 'none' }, 1000),
    await waitSeat(b, s2, { available: 'false', held: 'none' }, 1000));
  log(`B saw A's booking in ${soldMs} ms (after A's page showed BOOKED)`);
  const left = await b.$eval('#map-sub', (e) => e.textContent);
  check(left.includes('38 of 40'), `B's page does not show the remaining seats live: "${left}"`);
  await shot(a, 'a-booked');
  await shot(b, 'b-sees-sold');
  await click(b, 'book');
  const taken = await waitStatus(b, 'SEAT_TAKEN');
  check(taken.includes('R1-7'), `SEAT_TAKEN does not name the seat: "${taken}"`);
  await shot(b, 'b-seat-taken');
  check(pageErrors.length === 0, 'errors in the page: ' + pageErrors.join('; '));
}

/* A hold's countdown runs out (holds.ttl_s is short in this run): its seats come back
 * on the holder's page and on another buyer's page on the other reserved. */
async function holdExpiry() {
  const ttl = Number(process.env.HOLD_TTL_S || 3);
  const a = await openBuyer('A', A);
  const b = await openBuyer('B', B);
  await signup(a, 'Alice', `alice.${tag}@example.test`);
  await waitLive(a);
  await waitLive(b);
  const ids = await seatIds(a);
  const held = [ids[12], ids[13]];
  await pick(a, held);
  await click(a, 'hold');
  await waitStatus(a, 'HELD');
  const left = await a.$eval('[data-role="countdown"]', (e) => Number(e.dataset.secondsLeft));
  check(left > 0 && left <= ttl, `the countdown shows ${left} s for a hold of ${ttl} s`);
  for (const id of held) await waitSeat(b, id, { available: 'false', held: 'other' }, 1000);
  await shot(a, 'a-countdown');
  await shot(b, 'b-sees-held');
  await waitStatus(a, 'HOLD_EXPIRED', (ttl + 2) * 1000);
  // the server frees an expired hold within 1 s of expiresAt (SPEC §9)
  for (const id of held) {
    await waitSeat(a, id, { available: 'true', held: 'none' }, 2500);
    await waitSeat(b, id, { available: 'true', held: 'none' }, 2500);
  }
  // and for real: the server's map agrees
  const seats = await (await fetch(`${A}/performances/${PERF}/seats`)).json();
  for (const id of held) {
    const s = seats.seats.find((x) => x.id === id);
    check(s.available === true && s.held !== true, `seat ${id} is ${JSON.stringify(s)} after the hold expired`);
  }
  await shot(a, 'a-expired');
  await shot(b, 'b-sees-free');
  check(pageErrors.length === 0, 'errors in the page: ' + pageErrors.join('; '));
}

const SCENARIOS = {
  app_basics: appBasics,
  login_errors: loginErrors,
  limit_payment: limitPayment,
  two_buyers: twoBuyers,
  live_booking: liveBooking,
  hold_expiry: holdExpiry,
};

async function main() {
  const run = SCENARIOS[scenario];
  if (!run) {
    process.stderr.write(`unknown scenario ${scenario}; one of ${Object.keys(SCENARIOS).join(', ')}\n`);
    return 2;
  }
  fs.mkdirSync(outDir, { recursive: true });
  browser = await puppeteer.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    // --no-sandbox: the tests run as root in CI, where Chromium's sandbox refuses to start
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--no-first-run',
      '--disable-extensions', '--disable-background-networking'],
  });
  try {
    await run();
    log('PASS');
    return 0;
  } catch (e) {
    process.stderr.write(`FAIL [${scenario}]: ${e instanceof Fail ? e.message : e.stack}\n`);
    for (const p of await browser.pages()) {
      if (p.who) await shot(p, `failure-${p.who}`).catch(() => {});
    }
    if (pageErrors.length) process.stderr.write('page errors:\n  ' + pageErrors.join('\n  ') + '\n');
    if (consoleLines.length) process.stderr.write('page console:\n  ' + consoleLines.join('\n  ') + '\n');
    return 1;
  } finally {
    await browser.close();
  }
}

main().then((rc) => process.exit(rc), (e) => {
  process.stderr.write(String(e && e.stack) + '\n');
  process.exit(1);
});
