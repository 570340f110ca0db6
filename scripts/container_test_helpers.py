#!/usr/bin/env python3
"""Helpers for scripts/container-test.sh, standard library only.

  fake-provider HOST PORT STATEFILE
      A minimal OAuth 2.0 provider for the compose test (the brief's "tiny fake token
      endpoint"): /authorize sends the browser straight back with a code; /token answers the
      authorization_code grant with an access token that expires in 2 s and the refresh_token
      grant with one valid for an hour, and counts refresh grants in STATEFILE (JSON).
  browser-flow AUTHORIZE_URL
      The user's browser: follows redirects within the provider's origin with a cookie jar
      (logging in and consenting at panva's oidc-provider, which does both automatically in
      tests/oidc-provider) and prints the first URL outside that origin (Relay's callback).
  get URL [API_KEY]
      GET; prints `STATUS BODY`.
  burst API_KEY PATH N BASE_URL...
      N concurrent GETs of PATH spread over the base URLs; prints one JSON line:
      {"statuses": {...}, "distinct_tokens": N, "per_base": {...}}.
"""

import http.cookiejar
import json
import secrets
import sys
import threading
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def get(url, api_key=None, opener=None):
    req = urllib.request.Request(url)
    if api_key:
        req.add_header("Authorization", f"Bearer {api_key}")
    opener = opener or urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(req, timeout=30) as r:
            return r.status, r.headers, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read().decode()


def browser_flow(authorize_url):
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(NoRedirect, urllib.request.HTTPCookieProcessor(jar))
    origin = urllib.parse.urlsplit(authorize_url)[:2]
    current = authorize_url
    for _ in range(20):
        status, headers, body = get(current, opener=opener)
        location = headers.get("Location")
        if status not in (301, 302, 303, 307, 308) or not location:
            sys.exit(f"provider answered {status} at {current}: {body[:500]}")
        current = urllib.parse.urljoin(current, location)
        if urllib.parse.urlsplit(current)[:2] != origin:
            print(current)
            return
    sys.exit("too many redirects at the provider")


def fake_provider(host, port, statefile):
    lock = threading.Lock()
    state = {"code_grants": 0, "refresh_grants": 0}

    def save():
        with open(statefile, "w") as f:
            json.dump(state, f)

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            url = urllib.parse.urlsplit(self.path)
            q = dict(urllib.parse.parse_qsl(url.query))
            if url.path != "/authorize" or "redirect_uri" not in q:
                self.send_error(404)
                return
            back = q["redirect_uri"] + "?" + urllib.parse.urlencode({"code": "code-" + secrets.token_hex(8), "state": q.get("state", "")})
            self.send_response(302)
            self.send_header("Location", back)
            self.end_headers()

        def do_POST(self):
            length = int(self.headers.get("Content-Length", 0))
            form = dict(urllib.parse.parse_qsl(self.rfile.read(length).decode()))
            if self.path != "/token":
                self.send_error(404)
                return
            with lock:
                if form.get("grant_type") == "authorization_code":
                    state["code_grants"] += 1
                    ttl = 2
                elif form.get("grant_type") == "refresh_token":
                    state["refresh_grants"] += 1
                    ttl = 3600
                else:
                    self.send_error(400)
                    return
                save()
            body = json.dumps({
                "access_token": "at-" + secrets.token_hex(12),
                "refresh_token": "rt-" + secrets.token_hex(12),
                "token_type": "Bearer",
                "expires_in": ttl,
                "scope": "read",
            }).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    save()
    server = ThreadingHTTPServer((host, int(port)), Handler)
    print("READY", flush=True)
    server.serve_forever()


def burst(api_key, path, n, bases):
    def one(i):
        base = bases[i % len(bases)]
        status, _, body = get(base + path, api_key)
        token = json.loads(body).get("access_token") if status == 200 else None
        return base, status, token

    with ThreadPoolExecutor(max_workers=min(n, 32)) as pool:
        results = list(pool.map(one, range(n)))
    statuses, per_base = {}, {}
    for base, status, _ in results:
        statuses[str(status)] = statuses.get(str(status), 0) + 1
        per_base[base] = per_base.get(base, 0) + (status == 200)
    tokens = sorted({t for _, _, t in results if t})
    # The count only: tokens stay out of the CI log.
    print(json.dumps({"statuses": statuses, "distinct_tokens": len(tokens), "per_base": per_base}))


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "fake-provider":
        fake_provider(*args)
    elif cmd == "browser-flow":
        browser_flow(args[0])
    elif cmd == "get":
        status, _, body = get(args[0], args[1] if len(args) > 1 else None)
        print(status, body)
    elif cmd == "burst":
        burst(args[0], args[1], int(args[2]), args[3:])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
