"""Signed webhook requests as the providers send them, for Herald's gateway
tests (tests/tests/gateway.rs).

Signatures come from the providers' own libraries where they publish one
(Stripe's `stripe.WebhookSignature`, `standardwebhooks`, `svix`) and from the
documented algorithms otherwise (GitHub `X-Hub-Signature-256`, Shopify
`X-Shopify-Hmac-Sha256`, Slack's `v0:<timestamp>:<body>` through the generic
`hmac` scheme). Every scheme gets a good request, a tampered body, a replay
outside the timestamp tolerance (or, for schemes without a signed timestamp,
an unsigned request), a request signed with the second secret of a rotation,
and one signed with a secret the gateway does not know.

Usage: webhook_cases.py '<json: {"<source>": ["secret0", "secret1"], ...}>' <run id>
Prints a JSON list of {name, source, headers, body, status, reason, key, id}.
"""

import base64
import datetime
import hashlib
import hmac
import json
import sys
import time

import standardwebhooks.webhooks as standard
import stripe
import svix.webhooks as svix

SECRETS = json.loads(sys.argv[1])
RUN = sys.argv[2]
NOW = int(time.time())
STALE = NOW - 3600
cases = []


def case(name, source, headers, body, status, reason=None, key=None, id=None):
    cases.append(
        dict(name=name, source=source, headers=headers, body=body,
             status=status, reason=reason, key=key, id=id)
    )


def tamper(body):
    # Still JSON, one byte more: only the signature can tell.
    return body.replace("}", " }", 1)


# Stripe: Stripe-Signature: t=<unix>,v1=<hex hmac of "<t>.<body>">.
def stripe_body(n):
    return json.dumps({
        "id": f"evt_{RUN}_{n}", "object": "event", "type": "customer.subscription.created",
        "data": {"object": {"id": f"sub_{n}", "customer": f"cus_{RUN}_{n}"}},
    })


def stripe_sig(body, secret, t=None):
    return {"Stripe-Signature": stripe.WebhookSignature.generate_signature_header(body, secret, t)}


old, new = SECRETS["stripe"]
b = stripe_body("good")
case("stripe good", "stripe", stripe_sig(b, old), b, 200, key=0, id=f"evt_{RUN}_good")
case("stripe tampered", "stripe", stripe_sig(b, old), tamper(b), 401, "mismatch")
b = stripe_body("stale")
case("stripe stale", "stripe", stripe_sig(b, old, STALE), b, 401, "stale")
b = stripe_body("rotated")
case("stripe rotated", "stripe", stripe_sig(b, new), b, 200, key=1, id=f"evt_{RUN}_rotated")
case("stripe unknown key", "stripe", stripe_sig(b, "whsec_not_ours"), b, 401, "mismatch")


# Standard Webhooks (webhook-*) and Svix (svix-*), the libraries' own sign().
def sw_headers(lib, prefix, secret, msg_id, body, ts):
    when = datetime.datetime.fromtimestamp(ts, tz=datetime.timezone.utc)
    sig = lib.Webhook(secret).sign(msg_id, when, body)
    return {f"{prefix}-id": msg_id, f"{prefix}-timestamp": str(ts), f"{prefix}-signature": sig}


for lib, prefix in [(standard, "webhook"), (svix, "svix")]:
    old, new = SECRETS["standard"]
    for n, secret, ts, status, reason, key in [
        ("good", old, NOW, 200, None, 0),
        ("stale", old, STALE, 401, "stale", None),
        ("rotated", new, NOW, 200, None, 1),
        ("unknown key", "whsec_" + base64.b64encode(b"not ours at all!").decode(), NOW, 401, "mismatch", None),
    ]:
        msg_id = f"msg_{RUN}_{prefix}_{n.replace(' ', '_')}"
        body = json.dumps({"type": "invoice.paid", "timestamp": "2026-12-07T00:00:00Z", "data": {"n": n}})
        hs = sw_headers(lib, prefix, secret, msg_id, body, ts)
        case(f"{prefix} {n}", "standard", hs, body, status, reason, key, msg_id if status == 200 else None)
    msg_id = f"msg_{RUN}_{prefix}_tampered"
    body = json.dumps({"type": "invoice.paid", "data": {}})
    case(f"{prefix} tampered", "standard", sw_headers(lib, prefix, old, msg_id, body, NOW), tamper(body), 401, "mismatch")


# GitHub: X-Hub-Signature-256: sha256=<hex hmac of the body>; no timestamp.
def github(secret, body, delivery):
    sig = hmac.new(secret.encode(), body.encode(), hashlib.sha256).hexdigest()
    return {"X-Hub-Signature-256": "sha256=" + sig, "X-GitHub-Event": "issues",
            "X-GitHub-Delivery": delivery, "X-GitHub-Hook-ID": "42"}


old, new = SECRETS["github"]
body = json.dumps({"action": "opened", "issue": {"number": 1}, "repository": {"full_name": "acme/api"}})
case("github good", "github", github(old, body, f"gh-{RUN}-good"), body, 200, key=0, id=f"gh-{RUN}-good")
case("github tampered", "github", github(old, body, f"gh-{RUN}-t"), tamper(body), 401, "mismatch")
hs = github(old, body, f"gh-{RUN}-unsigned")
del hs["X-Hub-Signature-256"]
case("github unsigned", "github", hs, body, 401, "missing")
case("github rotated", "github", github(new, body, f"gh-{RUN}-rotated"), body, 200, key=1, id=f"gh-{RUN}-rotated")
case("github unknown key", "github", github("nope", body, f"gh-{RUN}-x"), body, 401, "mismatch")


# Shopify: X-Shopify-Hmac-Sha256: <base64 hmac of the body>; no timestamp.
def shopify(secret, body, webhook_id):
    sig = base64.b64encode(hmac.new(secret.encode(), body.encode(), hashlib.sha256).digest()).decode()
    return {"X-Shopify-Hmac-Sha256": sig, "X-Shopify-Topic": "orders/create",
            "X-Shopify-Webhook-Id": webhook_id, "X-Shopify-Shop-Domain": "acme.myshopify.com"}


old, new = SECRETS["shopify"]
body = json.dumps({"id": 820982911946154508, "email": "jon@example.com"})
case("shopify good", "shopify", shopify(old, body, f"sh-{RUN}-good"), body, 200, key=0, id=f"sh-{RUN}-good")
case("shopify tampered", "shopify", shopify(old, body, f"sh-{RUN}-t"), tamper(body), 401, "mismatch")
hs = shopify(old, body, f"sh-{RUN}-unsigned")
hs["X-Shopify-Hmac-Sha256"] = "not base64!"
case("shopify malformed", "shopify", hs, body, 401, "malformed")
case("shopify rotated", "shopify", shopify(new, body, f"sh-{RUN}-rotated"), body, 200, key=1, id=f"sh-{RUN}-rotated")
case("shopify unknown key", "shopify", shopify("nope", body, f"sh-{RUN}-x"), body, 401, "mismatch")


# Generic hmac, configured as Slack signs: v0=<hex hmac of "v0:<ts>:<body>">.
def slack(secret, body, ts):
    sig = hmac.new(secret.encode(), f"v0:{ts}:{body}".encode(), hashlib.sha256).hexdigest()
    return {"X-Slack-Signature": "v0=" + sig, "X-Slack-Request-Timestamp": str(ts)}


old, new = SECRETS["slack"]
for n, secret, ts, status, reason, key in [
    ("good", old, NOW, 200, None, 0),
    ("stale", old, STALE, 401, "stale", None),
    ("rotated", new, NOW, 200, None, 1),
    ("unknown key", "nope", NOW, 401, "mismatch", None),
]:
    eid = f"Ev{RUN}{n.replace(' ', '')}"
    body = json.dumps({"event_id": eid, "event": {"type": "app_mention"}})
    case(f"slack {n}", "slack", slack(secret, body, ts), body, status, reason, key, eid if status == 200 else None)
body = json.dumps({"event_id": f"Ev{RUN}t", "event": {"type": "app_mention"}})
case("slack tampered", "slack", slack(old, body, NOW), tamper(body), 401, "mismatch")

json.dump(cases, sys.stdout)
