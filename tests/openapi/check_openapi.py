#!/usr/bin/env python3
"""check_openapi.py: docs/openapi.yaml against a running reserved.

Usage:
  check_openapi.py --spec FILE --root DIR --api H:P [--stop-api H:P --stop-pid PID]
                   [--pay URL] [--lockd H:P --lockctl PATH] [--psql CMD]
                   [--db-stop CMD --db-start CMD] [--max-body-bytes N] [--origin O]
                   [--reserved-bin PATH] [--api-md FILE] [--admin-token T]
  check_openapi.py --spec FILE --plant OUT

Checks, printing one line per failure (exit 1 if any):
  1. the document: OpenAPI 3.1 structure (required fields, unique operationIds, path
     parameters declared, every response described and given x-check cases), every $ref
     resolves, every schema is a valid JSON Schema 2020-12, every example matches its
     schema, info.version is reserved --version;
  2. the routes: the route tables of reserved's source (reserved/*.c) equal the documented
     operations (method, path, operationId = route name) both ways, and the documented
     OPTIONS are exactly the served paths; on every documented path, OPTIONS answers 204
     and every other method 405, both with an Allow header that lists exactly the
     documented methods; OPTIONS * lists them all; an unknown path answers 404;
  3. the answers: for every operation and every documented status, the requests of its
     x-check cases (see the comment at the top of docs/openapi.yaml) are sent to the
     server in the state they ask for (--api normally; a declining gateway; a lock held by
     lockctl; --stop-api after SIGTERM; PostgreSQL stopped) and must get that status, a
     body that validates against the documented schema (jsonschema, Draft 2020-12), the
     documented headers, the expected error code and, with --origin, the CORS headers;
     the request itself must match the documented request schemas for a 2xx case and
     must not for a 400 case (unless marked valid), so the documented limits are the
     server's; after each request on --api the server's counter
     reserved_http_requests_total{route=<operationId>,method,code} must have moved by one
     (the path really is that route);
  4. coverage: the routes that answered (reserved_http_request_seconds_count series) are
     exactly the documented ones; with --api-md, every marked response example of
     docs/api.md matches its schema and every operation has one of its success.
Who calls (SPEC §6a): every request carries "Authorization: Bearer <admin token>"
(--admin-token, default $BK_ADMIN_TOKEN, which scripts/lib/booking.sh exports) unless its
case's headers hold an Authorization header of their own; an empty one sends none. The
placeholders {adminToken}, {userToken} (the fixture user's, a customer), {otherToken}
(another customer's), {otherUser} (that customer's id), {freshToken} (a new customer's,
signed up and logged in for the case: one it may log out) and {badToken} (64 hex digits
no login gave) are there for such headers and bodies.
--plant writes a copy of the spec with three planted faults (a route left out, a wrong
status, a wrong field type) for the test that shows this checker catches them.
"""
import argparse
import collections
import http.client
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse

import jsonschema
import yaml

METHODS = ["get", "put", "post", "delete", "options", "head", "patch", "trace"]
PROBE_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]
CASE_KEYS = {"params", "query", "rawQuery", "headers", "body", "rawBody", "tooLarge",
             "before", "sameAsBefore", "phase", "code", "expectHeaders", "absentHeaders",
             "unrouted", "valid", "method", "path"}
PHASES = {None, "declined", "lockHeld", "stopping", "dbDown"}
MISSING_ID = 999999999999

failures = []


def fail(msg):
    failures.append(msg)
    print("FAIL: " + msg, flush=True)


# ---------------------------------------------------------------- the document


def walk(node, path=""):
    """Yields (json pointer, node) for every dict and list in node."""
    yield path, node
    if isinstance(node, dict):
        for k, v in node.items():
            yield from walk(v, path + "/" + str(k).replace("~", "~0").replace("/", "~1"))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from walk(v, f"{path}/{i}")


def resolve_pointer(doc, ref):
    if not ref.startswith("#/"):
        raise KeyError(f"{ref}: only local references are used here")
    node = doc
    for part in ref[2:].split("/"):
        part = urllib.parse.unquote(part).replace("~1", "/").replace("~0", "~")
        if isinstance(node, list):
            node = node[int(part)]
        else:
            node = node[part]
    return node


def deref(doc, node):
    seen = 0
    while isinstance(node, dict) and "$ref" in node and seen < 20:
        node = resolve_pointer(doc, node["$ref"])
        seen += 1
    return node


# One documented operation. route: the server's route name (the operationId, or x-route for
# the OPTIONS of every path, which has none); name: how messages call it.
Op = collections.namedtuple("Op", "method path opid op item route name")


class Spec:
    def __init__(self, doc):
        self.doc = doc
        self.ops = []
        for path, item in (doc.get("paths") or {}).items():
            for m in METHODS:
                if isinstance(item, dict) and isinstance(item.get(m), dict):
                    op = item[m]
                    opid = op.get("operationId")
                    route = opid or op.get("x-route")
                    self.ops.append(Op(m.upper(), path, opid, op, item, route,
                                       opid or f"{m.upper()} {path}"))

    def validator(self, schema):
        # The schema joined with the document's top level (none of whose keys is a JSON
        # Schema keyword), so that "#/components/..." resolves against the document.
        root = {k: v for k, v in self.doc.items() if k != "$ref"}
        root.update(schema)
        return jsonschema.Draft202012Validator(root)

    def errors(self, schema, value):
        return [f"{'/'.join(str(p) for p in e.absolute_path) or '(top)'}: {e.message}"
                for e in self.validator(schema).iter_errors(value)]

    def params(self, op, item, where):
        out = {}
        for p in (item.get("parameters") or []) + (op.get("parameters") or []):
            p = deref(self.doc, p)
            if p.get("in") == where:
                out[p["name"]] = p
        return out


def check_structure(spec):
    doc = spec.doc
    if not str(doc.get("openapi", "")).startswith("3.1."):
        fail(f"document: openapi is {doc.get('openapi')!r}, want 3.1.x")
    info = doc.get("info")
    if not isinstance(info, dict) or not isinstance(info.get("title"), str) or \
            not isinstance(info.get("version"), str):
        fail("document: info.title and info.version are required strings")
    if not isinstance(doc.get("paths"), dict) or not doc["paths"]:
        fail("document: no paths")
    for ptr, node in walk(doc):
        if isinstance(node, dict) and isinstance(node.get("$ref"), str):
            try:
                resolve_pointer(doc, node["$ref"])
            except (KeyError, IndexError, ValueError, TypeError):
                fail(f"document: {ptr}: $ref {node['$ref']} does not resolve")
    ids = {}
    for method, path, opid, op, item, route, _ in spec.ops:
        where = f"{method} {path}"
        if not path.startswith("/"):
            fail(f"{where}: a path must start with /")
        if not route:
            fail(f"{where}: no operationId (or x-route: the route it shares)")
        elif opid in ids:
            fail(f"{where}: operationId {opid} is also {ids[opid]}")
        if opid:
            ids[opid] = where
        names = set(re.findall(r"\{([^}]+)\}", path))
        declared = spec.params(op, item, "path")
        for n in names - set(declared):
            fail(f"{where}: path parameter {n} is not declared")
        for n, p in declared.items():
            if n not in names:
                fail(f"{where}: declared path parameter {n} is not in the path")
            if p.get("required") is not True:
                fail(f"{where}: path parameter {n} must be required")
        responses = op.get("responses")
        if not isinstance(responses, dict) or not responses:
            fail(f"{where}: no responses")
            continue
        checks = op.get("x-check") or {}
        for status in set(checks) - set(responses):
            fail(f"{where}: x-check has cases for {status}, which is not a documented status")
        for status, resp in responses.items():
            if not re.fullmatch(r"[1-5][0-9][0-9]|default", str(status)):
                fail(f"{where}: response key {status!r} is not a status")
            r = deref(doc, resp)
            if not isinstance(r, dict) or not isinstance(r.get("description"), str):
                fail(f"{where} {status}: a response needs a description")
            cases = checks.get(status)
            if not cases:
                fail(f"{where} {status}: no x-check case says how to get this answer")
            for c in cases or []:
                bad = set(c) - CASE_KEYS
                if bad:
                    fail(f"{where} {status}: unknown x-check keys {sorted(bad)}")
                if c.get("phase") not in PHASES:
                    fail(f"{where} {status}: unknown phase {c.get('phase')}")
    # every schema, wherever it is, must be a schema; every example must match
    for ptr, node in walk(doc):
        if not isinstance(node, dict):
            continue
        if "schema" in node and isinstance(node["schema"], dict):
            try:
                jsonschema.Draft202012Validator.check_schema(node["schema"])
            except jsonschema.SchemaError as e:
                fail(f"document: {ptr}/schema is not a JSON Schema: {e.message}")
            if "example" in node:
                for e in spec.errors(node["schema"], node["example"]):
                    fail(f"document: {ptr}/example does not match its schema: {e}")
    for name, schema in ((doc.get("components") or {}).get("schemas") or {}).items():
        try:
            jsonschema.Draft202012Validator.check_schema(schema)
        except jsonschema.SchemaError as e:
            fail(f"document: schema {name} is not a JSON Schema: {e.message}")
        if isinstance(schema, dict) and "example" in schema:
            for e in spec.errors(schema, schema["example"]):
                fail(f"document: the example of schema {name} does not match it: {e}")


# ---------------------------------------------------------------- the route tables


def source_routes(root):
    """(METHOD, pattern, name) of every rs_route table entry in reserved/*.c (method, pattern,
    name, handler and, since SPEC §6a, an access level)."""
    out = set()
    rx = re.compile(r'\{\s*RS_([A-Z]+)\s*,\s*"([^"]+)"\s*,\s*"([^"]+)"\s*,\s*\w+\s*'
                    r'(?:,\s*RS_ACCESS_[A-Z]+\s*)?\}')
    d = os.path.join(root, "reserved")
    for f in sorted(os.listdir(d)):
        if f.endswith(".c"):
            for m in rx.finditer(open(os.path.join(d, f), encoding="utf-8").read()):
                out.add((m.group(1), m.group(2), m.group(3)))
    return out


def check_route_tables(spec, root):
    served = source_routes(root)
    if not served:
        fail("routes: found no route table in reserved/*.c")
    documented = {(o.method, o.path, o.opid) for o in spec.ops if o.opid}
    by_mp = {(m, p): o for m, p, o in documented}
    for m, p, name in sorted(served - documented):
        if (m, p) in by_mp:
            fail(f"routes: {m} {p} is route {name} in reserved, operationId {by_mp[(m, p)]} "
                 "in the document")
        else:
            fail(f"routes: reserved serves {m} {p} (route {name}), the document does not "
                 "document it")
    served_mp = {(m, p) for m, p, _ in served}
    for m, p, o in sorted(documented):
        if (m, p) not in served_mp:
            fail(f"routes: the document has {m} {p} ({o}), reserved has no such route")
    # every path reserved serves answers OPTIONS (route "options"), and only those
    patterns = {p for _, p, _ in served}
    with_options = {o.path for o in spec.ops if o.method == "OPTIONS"}
    for p in sorted(patterns - with_options):
        fail(f"routes: reserved answers OPTIONS {p}, the document does not document it")
    for p in sorted(with_options - patterns):
        fail(f"routes: the document has OPTIONS {p}, reserved serves no such path")


# ---------------------------------------------------------------- HTTP


class Resp:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers  # lower-case name -> value
        self.body = body
        self.text = body.decode("utf-8", "replace")
        try:
            self.json = json.loads(self.text)
        except ValueError:
            self.json = None


# The admin's bearer token, sent by request() unless the headers say who calls; the API
# address whose counters are read at METRICS instead (its metrics_listen: no token needed,
# so the counters stay readable while the database, which every token lookup needs, is
# down), and whether a read there counts as a GET /metrics itself (main sets them).
ADMIN = {"token": None}
METRICS = {"api": None, "addr": None, "self_counted": True}


def with_auth(headers):
    """headers plus the admin's Authorization, unless they hold one ("" or None: none)."""
    hdrs = dict(headers or {})
    own = [k for k in hdrs if k.lower() == "authorization"]
    if own:
        for k in own:
            if not hdrs[k]:
                del hdrs[k]
    elif ADMIN["token"]:
        hdrs["Authorization"] = f"Bearer {ADMIN['token']}"
    return hdrs


def request(addr, method, target, body=None, headers=None, conn=None, timeout=20):
    """One request; conn: an open HTTPConnection to reuse (else a new one, closed after)."""
    own = conn is None
    if own:
        host, port = addr.rsplit(":", 1)
        conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        hdrs = with_auth(headers)
        if body is not None:
            hdrs.setdefault("Content-Type", "application/json")
        conn.request(method, target, body=body, headers=hdrs)
        r = conn.getresponse()
        if (r.getheader("Content-Type") or "").startswith("text/event-stream"):
            data = r.read1(65536)  # the first chunk: the stream's preamble; a stream never
            conn.close()           # ends by itself, and the connection is the stream's
            return Resp(r.status, {k.lower(): v for k, v in r.getheaders()}, data)
        data = r.read()
        return Resp(r.status, {k.lower(): v for k, v in r.getheaders()}, data)
    finally:
        if own:
            conn.close()


def metrics(addr):
    """{(route, method, code): count} and the set of (route, method) with a latency count."""
    if addr == METRICS["api"] and METRICS["addr"]:
        addr = METRICS["addr"]
    r = request(addr, "GET", "/metrics")
    counts, seen = {}, set()
    for line in r.text.splitlines():
        m = re.match(r'reserved_http_requests_total\{route="([^"]*)",method="([^"]*)",'
                     r'code="(\d+)"[^}]*\} (\d+)$', line)
        if m:
            counts[(m.group(1), m.group(2), int(m.group(3)))] = int(m.group(4))
        m = re.match(r'reserved_http_request_seconds_count\{route="([^"]*)",method="([^"]*)"\} '
                     r'(\d+)$', line)
        if m and int(m.group(3)) > 0:
            seen.add((m.group(1), m.group(2)))
    return counts, seen, r.text


# ---------------------------------------------------------------- fixtures and placeholders


class World:
    """What the x-check placeholders stand for, made through the API."""

    def __init__(self, api, psql, tag, origin):
        self.api = api
        self.origin = origin
        self.tag = tag
        self.n = 0
        self.free = []
        self.fixed = {"missing": MISSING_ID, "longKey": "x" * 255, "origin": origin}
        self.build(psql)

    def call(self, method, path, body=None, want=None):
        r = request(self.api, method, path, None if body is None else json.dumps(body))
        if want is not None and r.status != want:
            raise RuntimeError(f"fixture {method} {path}: want {want}, got {r.status} {r.text}")
        return r.json

    def seats_of(self, perf):
        return [s["id"] for s in self.call("GET", f"/performances/{perf}/seats", want=200)["seats"]]

    def book(self, perf, user, seats):
        return self.call("POST", f"/performances/{perf}/reservations",
                         {"userId": user, "seatIds": seats}, want=201)["id"]

    def build(self, psql):
        seats = [{"row": row, "number": n, "type": "VIP" if row == "R1" else "NORMAL"}
                 for row in ("R10", "R2", "R1") for n in range(1, 16)]
        venue = self.call("POST", "/venues", {"name": f"Check venue {self.tag}", "seats": seats},
                          201)["id"]
        venue2 = self.call("POST", "/venues", {"name": f"Other venue {self.tag}", "seats": [
            {"row": "A", "number": 1, "type": "NORMAL"}]}, 201)["id"]

        def perf(v, title, day):
            return self.call("POST", "/performances", {
                "venueId": v, "title": f"{title} {self.tag}",
                "startsAt": f"2027-03-{day:02d}T19:00:00+09:00",
                "normalPrice": 50000, "vipPrice": 120000}, 201)["id"]

        p = perf(venue, "CHECK show", 1)
        perf(venue, "CHECK later show", 2)
        busy = perf(venue, "Busy show", 3)
        sold = perf(venue2, "Sold-out show", 4)
        user, user_token = self.customer("Check user", f"fixture.{self.tag}@example.org")
        other, other_token = self.customer("Other user", f"other.{self.tag}@example.org")
        self.free = self.seats_of(p)
        taken = self.free.pop()
        reservation = self.book(p, user, [taken])
        cancel_me = self.book(p, user, [self.free.pop()])
        busy_seats = self.seats_of(busy)
        busy_res = self.book(busy, user, [busy_seats[0]])
        foreign = self.seats_of(sold)[0]
        if psql:
            subprocess.run(shlex.split(psql) + [
                "-c", f"UPDATE performances SET remaining_capacity = 0 WHERE id = {sold}"],
                check=True, stdout=subprocess.DEVNULL)
        page = self.call("GET", "/performances?limit=1", want=200)
        rpage = self.call("GET", f"/users/{user}/reservations?limit=1", want=200)
        self.fixed.update({
            "venue": venue, "perf": p, "user": user, "reservation": reservation,
            "takenSeat": taken, "foreignSeat": foreign, "soldOutPerf": sold,
            "soldOutSeat": foreign, "busyPerf": busy, "busySeat": busy_seats[1],
            "busyReservation": busy_res, "cancelMe": cancel_me,
            "cursor": page["nextCursor"], "resCursor": rpage["nextCursor"],
            "adminToken": ADMIN["token"] or "", "userToken": user_token,
            "otherToken": other_token, "otherUser": other, "badToken": "0" * 64})

    def customer(self, name, email):
        """A customer signed up and logged in: its id and token."""
        password = f"check-password-{self.tag}"
        uid = self.call("POST", "/users", {"name": name, "email": email, "password": password},
                        201)["id"]
        token = self.call("POST", "/sessions", {"email": email, "password": password},
                          201)["token"]
        return uid, token

    def value(self, name, label, labels):
        if (name, label) in labels:
            return labels[(name, label)]
        if name == "freeSeat":
            if not self.free:
                raise RuntimeError("out of free seats for {freeSeat}")
            v = self.free.pop(0)
        elif name == "uniq":
            self.n += 1
            v = f"{self.tag}-{self.n}"
        elif name == "hold":  # a new ACTIVE hold of the admin on {perf} (one free seat)
            seat = self.value("freeSeat", None, labels)
            v = self.call("POST", f"/performances/{self.fixed['perf']}/holds",
                          {"seatIds": [seat]}, want=201)["id"]
        elif name == "freshToken":  # a new customer's token, for a case that logs it out
            self.n += 1
            v = self.customer("Fresh user", f"fresh.{self.tag}-{self.n}@example.org")[1]
        elif name in self.fixed:
            v = self.fixed[name]
        else:
            raise KeyError(f"unknown placeholder {{{name}}}")
        if label is not None:
            labels[(name, label)] = v
        return v

    def fill(self, x, labels):
        if isinstance(x, dict):
            return {k: self.fill(v, labels) for k, v in x.items()}
        if isinstance(x, list):
            return [self.fill(v, labels) for v in x]
        if isinstance(x, str):
            m = re.fullmatch(r"\{([A-Za-z]+)(?::(\w+))?\}", x)
            if m:
                return self.value(m.group(1), m.group(2), labels)
            return re.sub(r"\{([A-Za-z]+)(?::(\w+))?\}",
                          lambda m: str(self.value(m.group(1), m.group(2), labels)), x)
        return x


# ---------------------------------------------------------------- one case


class Case:
    """One x-check case of one documented response, filled in and ready to send."""

    def __init__(self, spec, world, o, status, resp, raw, max_body):
        self.spec, self.method, self.op, self.item, self.route = \
            spec, o.method, o.op, o.item, o.route
        path = o.path
        self.status = int(status)
        self.resp = deref(spec.doc, resp)
        self.raw = raw
        self.phase = raw.get("phase")
        self.where = f"{o.name} {status}"
        self.origin = world.origin
        # what this path serves, for the OPTIONS cases: {allow}, {servedMethod}
        served = [x.method for x in spec.ops if x.path == path and x.method != "OPTIONS"]
        labels = {("allow", None): ", ".join(served + ["OPTIONS"]),
                  ("servedMethod", None): served[0] if served else "GET"}
        self.before = []
        for b in raw.get("before", []):
            self.before.append(self.build(world, labels, {**b, "params": raw.get("params", {})}
                                          if "params" not in b else b, path, max_body))
        self.req = self.build(world, labels, raw, path, max_body)
        self.expect_headers = world.fill(raw.get("expectHeaders") or {}, labels)

    def build(self, world, labels, c, path, max_body):
        method = c.get("method", self.method)
        params = world.fill(c.get("params", {}), labels)
        target = c.get("path", path)
        for k, v in params.items():
            target = target.replace("{" + k + "}", urllib.parse.quote(str(v), safe=""))
        query = None
        if "rawQuery" in c:
            target += "?" + c["rawQuery"]
        elif c.get("query"):
            query = world.fill(c["query"], labels)
            target += "?" + urllib.parse.urlencode(query, quote_via=urllib.parse.quote)
        headers = world.fill(c.get("headers", {}), labels) if "headers" in c else {}
        if world.origin and "Origin" not in headers:
            headers["Origin"] = world.origin  # CORS headers are checked on every answer
        body, jbody = None, None
        if "body" in c:
            jbody = world.fill(c["body"], labels)
            body = json.dumps(jbody)
        elif "rawBody" in c:
            body = c["rawBody"]
            try:
                jbody = json.loads(body)
            except ValueError:
                jbody = None
        elif c.get("tooLarge"):
            pad = max_body + 1 - len('{"pad":""}')
            body = '{"pad":"' + "x" * pad + '"}'
        return {"method": method, "target": target, "headers": headers, "body": body,
                "json": jbody, "query": query, "params": params, "raw": c}

    def request_errors(self):
        """Why the documented request schemas reject this request ([] if they accept it)."""
        c, req, errs = self.req["raw"], self.req, []
        if "rawQuery" in c:
            errs.append("the query string is malformed")
        documented = self.spec.params(self.op, self.item, "query")
        for name in set(req["query"] or {}) - set(documented):
            fail(f"{self.where}: x-check sends query parameter {name}, which is not documented")
        for where, values in (("path", req["params"]), ("query", req["query"] or {})):
            for name, p in self.spec.params(self.op, self.item, where).items():
                if name not in values:
                    continue
                v = values[name]
                schema = deref(self.spec.doc, p.get("schema", {}))
                if schema.get("type") == "integer" and re.fullmatch(r"-?[0-9]+", str(v)):
                    v = int(v)
                errs += [f"{where} {name}: {e}" for e in self.spec.errors(p.get("schema", {}), v)]
        for name, p in self.spec.params(self.op, self.item, "header").items():
            if name in req["headers"]:
                errs += [f"header {name}: {e}"
                         for e in self.spec.errors(p.get("schema", {}), req["headers"][name])]
        rb = self.op.get("requestBody")
        if rb is not None and not c.get("tooLarge"):
            rb = deref(self.spec.doc, rb)
            schema = rb.get("content", {}).get("application/json", {}).get("schema", {})
            if req["body"] is None or req["body"] == "":
                if rb.get("required"):
                    errs.append("the body is required")
            elif req["json"] is None:
                errs.append("the body is not JSON")
            else:
                errs += [f"body {e}" for e in self.spec.errors(schema, req["json"])]
        return errs

    def send_before(self, addr):
        self.before_answers = [request(addr, b["method"], b["target"], b["body"], b["headers"])
                               for b in self.before]

    def send(self, addr, conn=None):
        return request(addr, self.req["method"], self.req["target"], self.req["body"],
                       self.req["headers"], conn=conn)

    def judge(self, r):
        """Checks the answer against this response of the document."""
        where = f"{self.where} ({self.req['method']} {self.req['target'][:80]})"
        if r.status != self.status:
            fail(f"{where}: documented {self.status}, server answered {r.status}: {r.text[:200]}")
            return False
        ok = True
        content = self.resp.get("content") or {}
        ctype = r.headers.get("content-type", "")
        if content:
            if ctype not in content:
                fail(f"{where}: Content-Type {ctype!r}, documented {sorted(content)}")
                return False
            schema = content[ctype].get("schema", {})
            value = r.json if ctype.startswith("application/json") else r.text
            if ctype.startswith("application/json") and r.json is None:
                fail(f"{where}: the body is not JSON: {r.text[:200]}")
                return False
            errs = self.spec.errors(schema, value)
            for e in errs[:3]:
                fail(f"{where}: the body does not match the documented schema: {e}")
            if len(errs) > 3:
                fail(f"{where}: ... and {len(errs) - 3} more schema errors in this body")
            ok = ok and not errs
        for name, h in (self.resp.get("headers") or {}).items():
            h = deref(self.spec.doc, h)
            v = r.headers.get(name.lower())
            if v is None:
                if h.get("required"):
                    fail(f"{where}: documented header {name} is missing")
                    ok = False
                continue
            for e in self.spec.errors(h.get("schema", {}), v):
                fail(f"{where}: header {name}: {e}")
                ok = False
        ok = self.judge_cors(where, r) and ok
        def tokens(v):  # a list header compares as a set: "GET, POST" = "POST, GET"
            return {t.strip() for t in str(v).split(",")} if v is not None else None

        for name, want in self.expect_headers.items():
            if tokens(r.headers.get(name.lower())) != tokens(want):
                fail(f"{where}: header {name} is {r.headers.get(name.lower())!r}, want {want!r}")
                ok = False
        for name in self.raw.get("absentHeaders", []):
            if name.lower() in r.headers:
                fail(f"{where}: header {name} should not be sent")
                ok = False
        if self.raw.get("sameAsBefore"):
            first = self.before_answers[-1] if self.before_answers else None
            if first is None or first.status != r.status or first.json != r.json:
                fail(f"{where}: the answer differs from the first one: "
                     f"{first.status if first else '-'} {first.text[:150] if first else ''} / "
                     f"{r.status} {r.text[:150]}")
                ok = False
        code = self.raw.get("code")
        if code is not None:
            got = ((r.json or {}).get("error") or {}).get("code")
            if got != code:
                fail(f"{where}: error code {got}, want {code}")
                ok = False
        return ok

    def judge_cors(self, where, r):
        """With CORS on, every answer varies on Origin, and one to an allowed origin says so
        (errors included), except a refused preflight."""
        if not self.origin:
            return True
        sent = self.req["headers"].get("Origin")
        refused = "Access-Control-Allow-Origin" in self.raw.get("absentHeaders", [])
        want = {"vary": "Origin"}
        if sent == self.origin and not refused:
            want["access-control-allow-origin"] = self.origin
            want["access-control-expose-headers"] = "Retry-After, Allow"
        ok = True
        for name, value in want.items():
            if r.headers.get(name) != value:
                fail(f"{where}: CORS: header {name} is {r.headers.get(name)!r}, want {value!r}")
                ok = False
        if sent != self.origin and "access-control-allow-origin" in r.headers:
            fail(f"{where}: CORS: Access-Control-Allow-Origin for origin {sent!r}")
            ok = False
        return ok

    def check_request_schema(self):
        errs = self.request_errors()
        if 200 <= self.status < 300 and errs:
            fail(f"{self.where}: the server accepts a request the document rejects: {errs[0]}")
        if self.status == 400:
            if self.raw.get("valid") and errs:
                fail(f"{self.where}: case marked valid, but the document rejects it: {errs[0]}")
            if not self.raw.get("valid") and not errs:
                fail(f"{self.where}: the server rejects {self.req['target']} "
                     f"{(self.req['body'] or '')[:100]} with 400, the document allows it")


# ---------------------------------------------------------------- the phases


def run_normal(cases, addr, counters=True):
    for c in cases:
        c.check_request_schema()
        try:
            c.send_before(addr)
            before = metrics(addr)[0] if counters else None
            r = c.send(addr)
        except (OSError, http.client.HTTPException) as e:
            fail(f"{c.where}: request failed: {e}")
            continue
        c.judge(r)
        if not counters:
            continue
        after = metrics(addr)[0]
        route, method = (("unrouted", "ANY") if c.raw.get("unrouted")
                         else (c.route, c.req["method"]))
        key = (route, method, r.status)
        moved = after.get(key, 0) - before.get(key, 0)
        # a metrics case counts the first snapshot too, when snapshots count
        want = 2 if route == "metrics" and r.status == 200 and METRICS["self_counted"] else 1
        if moved != want:
            fail(f"{c.where}: counter reserved_http_requests_total{{route=\"{route}\","
                 f"method=\"{method}\",code=\"{r.status}\"}} moved by {moved}, want {want} "
                 "(is this path that route?)")


def run_declined(cases, addr, pay):
    if not cases:
        return
    if not pay:
        fail("phase declined: no --pay given")
        return
    request(pay.split("//", 1)[1], "POST", "/admin/config", json.dumps({"declineRate": 1}))
    try:
        run_normal(cases, addr)
    finally:
        request(pay.split("//", 1)[1], "POST", "/admin/config", json.dumps({"declineRate": 0}))


def run_db_down(cases, addr, stop_cmd, start_cmd):
    if not cases:
        return
    if not stop_cmd or not start_cmd:
        fail("phase dbDown: no --db-stop/--db-start given")
        return
    subprocess.run(stop_cmd, shell=True, check=True, stdout=subprocess.DEVNULL)
    try:
        run_normal(cases, addr)
    finally:
        subprocess.run(start_cmd, shell=True, check=True, stdout=subprocess.DEVNULL)
        deadline = time.time() + 20
        while request(addr, "GET", "/healthz").status != 200:
            if time.time() > deadline:
                fail("phase dbDown: the server did not become healthy again after the "
                     "database came back")
                break
            time.sleep(0.1)


def in_flight(addr):
    text = request(addr, "GET", "/metrics").text
    m = re.search(r"^reserved_http_in_flight (\d+)$", text, re.M)
    return int(m.group(1)) - 1 if m else -1  # not counting this request


def run_stopping(held, stopping, args):
    """lockHeld cases wait for a performance lock another process holds; then the server
    gets SIGTERM and must answer 503 UNAVAILABLE on its open connections while it finishes
    them; they end 503 BUSY after lock.wait_ms."""
    if not held and not stopping:
        return
    if not (args.stop_api and args.stop_pid and args.lockd and args.lockctl):
        fail("phases lockHeld/stopping: --stop-api, --stop-pid, --lockd, --lockctl needed")
        return
    addr = args.stop_api
    host, port = addr.rsplit(":", 1)
    conns = []
    for _ in stopping:
        c = http.client.HTTPConnection(host, int(port), timeout=20)
        request(addr, "GET", "/healthz", conn=c)  # accepted before the server stops accepting
        conns.append(c)
    holders = []
    for res in [f"Performance:{args.busy_perf}"]:  # what every lockHeld case waits for
        p = subprocess.Popen([args.lockctl, "--server", args.lockd, "acquire", res, "--wait",
                              "5000", "--", "sh", "-c", "echo held; exec sleep 60"],
                             stdout=subprocess.PIPE, text=True)
        if p.stdout.readline().strip() != "held":
            fail(f"phase lockHeld: lockctl could not take {res}")
        holders.append(p)
    results = [None] * len(held)

    def go(i, c):
        try:
            c.send_before(addr)
            results[i] = c.send(addr)
        except (OSError, http.client.HTTPException) as e:
            results[i] = e

    threads = [threading.Thread(target=go, args=(i, c)) for i, c in enumerate(held)]
    try:
        for c in held:
            c.check_request_schema()
        for t in threads:
            t.start()
        deadline = time.time() + 5
        while in_flight(addr) < len(held) and time.time() < deadline:
            time.sleep(0.02)
        if in_flight(addr) < len(held):
            fail("phase lockHeld: the requests did not all reach the server")
        os.kill(args.stop_pid, signal.SIGTERM)
        # it stops accepting and starts answering 503 in the same step: wait for the first
        deadline = time.time() + 5
        while time.time() < deadline:
            try:
                socket.create_connection((host, int(port)), timeout=1).close()
            except OSError:  # refused, or reset: the listener closed with us in its backlog
                break
            time.sleep(0.01)
        for c, conn in zip(stopping, conns):
            c.check_request_schema()
            try:
                c.send_before(addr)
                c.judge(c.send(addr, conn=conn))
            except (OSError, http.client.HTTPException) as e:
                fail(f"{c.where} (stopping): request failed: {e}")
        for t in threads:
            t.join(30)
        for c, r in zip(held, results):
            if isinstance(r, Resp):
                c.judge(r)
            else:
                fail(f"{c.where} (lock held): request failed: {r}")
    finally:
        for p in holders:
            p.terminate()
            p.wait(10)
        for c in conns:
            c.close()
    deadline = time.time() + 15
    while time.time() < deadline:
        try:
            os.kill(args.stop_pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    else:
        fail("phase stopping: the server did not exit after its last request")


def check_generic(spec, addr):
    """405 with Allow on every documented path for the methods it does not document; 404
    for a path that is no route."""
    doc = spec.doc
    allowed = {}
    for o in spec.ops:
        allowed.setdefault(o.path, set()).add(o.method)
    resp405 = deref(doc, doc["components"]["responses"]["MethodNotAllowed"])
    resp404 = deref(doc, doc["components"]["responses"]["NotFound"])
    s405 = resp405["content"]["application/json"]["schema"]
    s404 = resp404["content"]["application/json"]["schema"]
    for p, methods in allowed.items():
        target = re.sub(r"\{[^}]+\}", "1", p)
        for m in PROBE_METHODS:
            if m in methods:
                continue
            r = request(addr, m, target, "{}" if m in ("POST", "PUT", "PATCH") else None)
            if r.status != 405:
                fail(f"{m} {p}: not documented, the server answered {r.status} (want 405): "
                     f"{r.text[:200]}")
                continue
            got = {x.strip() for x in r.headers.get("allow", "").split(",") if x.strip()}
            if got != methods:
                fail(f"{m} {p}: 405 with Allow {sorted(got)}, the document has "
                     f"{sorted(methods)}")
            for e in spec.errors(s405, r.json):
                fail(f"{m} {p}: the 405 body does not match MethodNotAllowed: {e}")
        r = request(addr, "OPTIONS", target)
        got = {x.strip() for x in r.headers.get("allow", "").split(",") if x.strip()}
        if r.status != 204 or got != methods:
            fail(f"OPTIONS {p}: {r.status} with Allow {sorted(got)}, the document has 204 "
                 f"with {sorted(methods)}")
    every = set().union(*allowed.values())
    r = request(addr, "OPTIONS", "*")
    got = {x.strip() for x in r.headers.get("allow", "").split(",") if x.strip()}
    if r.status != 204 or got != every:
        fail(f"OPTIONS *: {r.status} with Allow {sorted(got)}, want 204 with every documented "
             f"method {sorted(every)}")
    for target in ("/nope", "/venues/1/nope", "/performances/"):
        r = request(addr, "GET", target)
        if r.status != 404:
            fail(f"GET {target}: want 404 for a path that is no route, got {r.status}")
        for e in spec.errors(s404, r.json):
            fail(f"GET {target}: the 404 body does not match NotFound: {e}")


def check_api_md(spec, path):
    """Every response example in docs/api.md (a ```json block after a marker
    <!-- example: OPERATIONID STATUS -->) matches the document's schema for that answer, and
    every operation has an example of its success."""
    text = open(path, encoding="utf-8").read()
    ops = {o.opid: o.op for o in spec.ops if o.opid}
    shown = set()
    n = 0
    for m in re.finditer(r"<!-- example: (\w+) (\d{3}) -->\s*```json\n(.*?)```", text, re.S):
        opid, status, body = m.group(1), m.group(2), m.group(3)
        n += 1
        where = f"docs/api.md: example {opid} {status}"
        resp = (ops.get(opid) or {}).get("responses", {}).get(status)
        if resp is None:
            fail(f"{where}: the document has no such operation and status")
            continue
        try:
            value = json.loads(body)
        except ValueError as e:
            fail(f"{where}: not JSON: {e}")
            continue
        schema = deref(spec.doc, resp).get("content", {}).get("application/json", {}).get(
            "schema", {})
        for e in spec.errors(schema, value):
            fail(f"{where}: does not match the documented schema: {e}")
        if status.startswith("2"):
            shown.add(opid)
    # /metrics answers text, the seat events a stream, a logout nothing (204): no JSON
    # example to show
    for opid in sorted(set(ops) - shown - {"metrics", "session_delete", "performance_events"}):
        fail(f"docs/api.md: no example of a successful answer of {opid}")
    if n == 0:
        fail("docs/api.md: no marked examples")


def check_coverage(spec, addr):
    """The routes that answered requests are exactly the documented operations."""
    _, seen, _ = metrics(addr)
    documented = {(o.route, o.method) for o in spec.ops}
    for route, method in sorted(seen - documented - {("unrouted", "ANY")}):
        fail(f"coverage: route {route} ({method}) answered requests, the document has no "
             "such operation")
    for route, method in sorted(documented - seen):
        fail(f"coverage: operation {route} ({method}) never answered as its own route")


# ---------------------------------------------------------------- main


def plant(spec_path, out):
    doc = yaml.safe_load(open(spec_path, encoding="utf-8"))
    del doc["paths"]["/users/{id}/reservations"]  # a route left out
    post = doc["paths"]["/venues"]["post"]
    post["responses"]["200"] = post["responses"].pop("201")  # a wrong status (and its check)
    post["x-check"]["200"] = post["x-check"].pop("201")
    doc["components"]["schemas"]["Performance"]["properties"]["totalCapacity"]["type"] = \
        "string"  # a wrong field type
    with open(out, "w", encoding="utf-8") as f:
        yaml.safe_dump(doc, f, sort_keys=False)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--spec", required=True)
    ap.add_argument("--plant")
    ap.add_argument("--root")
    ap.add_argument("--api")
    ap.add_argument("--stop-api")
    ap.add_argument("--stop-pid", type=int)
    ap.add_argument("--pay")
    ap.add_argument("--lockd")
    ap.add_argument("--lockctl")
    ap.add_argument("--psql")
    ap.add_argument("--db-stop")
    ap.add_argument("--db-start")
    ap.add_argument("--max-body-bytes", type=int, default=65536)
    ap.add_argument("--api-md", help="docs/api.md: check its marked response examples")
    ap.add_argument("--origin", help="an origin in the servers' cors.allow_origins")
    ap.add_argument("--reserved-bin", help="reserved: info.version must be its --version")
    ap.add_argument("--admin-token", default=os.environ.get("BK_ADMIN_TOKEN"),
                    help="an admin's bearer token, sent with every request ($BK_ADMIN_TOKEN)")
    ap.add_argument("--metrics", default=os.environ.get("BK_METRICS_ADDR"),
                    help="--api's metrics_listen H:P, where its counters are read "
                         "($BK_METRICS_ADDR)")
    args = ap.parse_args()
    ADMIN["token"] = args.admin_token
    if args.plant:
        plant(args.spec, args.plant)
        return 0
    if not args.root or not args.api:
        ap.error("--root and --api are needed")
    t0 = time.time()
    spec = Spec(yaml.safe_load(open(args.spec, encoding="utf-8")))
    check_structure(spec)
    check_route_tables(spec, args.root)
    if args.reserved_bin:
        out = subprocess.run([args.reserved_bin, "--version"], capture_output=True,
                             text=True).stdout.split()
        if out[-1:] != [str(spec.doc.get("info", {}).get("version"))]:
            fail(f"document: info.version {spec.doc.get('info', {}).get('version')!r}, "
                 f"reserved --version says {' '.join(out)!r}")
    if args.api_md:
        check_api_md(spec, args.api_md)
    if args.metrics:
        METRICS.update(api=args.api, addr=args.metrics)
        key = ("metrics", "GET", 200)
        METRICS["self_counted"] = metrics(args.api)[0].get(key, 0) < metrics(args.api)[0].get(key, 0)
    world = World(args.api, args.psql, f"{os.getpid()}{int(time.time() * 1000) % 100000}",
                  args.origin)
    args.busy_perf = world.fixed["busyPerf"]
    phases = {p: [] for p in PHASES}
    statuses = 0
    for o in spec.ops:
        for status, resp in (o.op.get("responses") or {}).items():
            statuses += 1
            for raw in (o.op.get("x-check") or {}).get(status) or []:
                try:
                    c = Case(spec, world, o, status, resp, raw, args.max_body_bytes)
                except (KeyError, RuntimeError) as e:
                    fail(f"{o.name} {status}: x-check case {raw}: {e}")
                    continue
                phases[c.phase].append(c)
    run_normal(phases[None], args.api)
    run_declined(phases["declined"], args.api, args.pay)
    check_generic(spec, args.api)
    run_stopping(phases["lockHeld"], phases["stopping"], args)
    run_db_down(phases["dbDown"], args.api, args.db_stop, args.db_start)
    check_coverage(spec, args.api)
    n = sum(len(v) for v in phases.values())
    verdict = f"{len(failures)} failure(s)" if failures else "OK"
    n_options = sum(o.method == "OPTIONS" for o in spec.ops)
    print(f"openapi check: {len(spec.ops) - n_options} operations and OPTIONS on {n_options} "
          f"paths, {statuses} documented statuses, "
          f"{n} cases in {time.time() - t0:.1f} s: {verdict}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
