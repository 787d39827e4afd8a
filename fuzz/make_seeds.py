#!/usr/bin/env python3
"""Write the seed inputs of every fuzz target into fuzz/corpus/<target>/.

Seeds are committed; this script only documents (and can redo) how they were made. It uses the
same fixed keys, issuer and audience as fuzz/src/lib.rs. Valid tokens expire in 2100, so they stay
valid seeds. Run: python3 fuzz/make_seeds.py
"""

import base64
import hashlib
import hmac
import json
import os
import shutil

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "corpus")

CURRENT_KID = "fuzz-current"
CURRENT_SECRET = b"fuzz-current-key-0123456789abcdefghijklmnopqrstu"
PREVIOUS_KID = "fuzz-previous"
PREVIOUS_SECRET = b"fuzz-previous-key-0123456789abcdefghijklmnopqrst"
FOREIGN_SECRET = b"fuzz-foreign-key-0123456789abcdefghijklmnopqrstu"
ISSUER = "https://auth.fuzz.invalid"
AUDIENCE = "todo-api"
assert len(CURRENT_SECRET) == len(PREVIOUS_SECRET) == len(FOREIGN_SECRET) == 48

USER = "0190a5b2-7c3d-7e4f-8a9b-0c1d2e3f4a5b"
SESSION = "0190a5b2-7c3d-7e4f-8a9b-0c1d2e3f4a5c"
JTI = "5f0c6a1e-2b3d-4c5e-9f6a-7b8c9d0e1f2a"
EPOCH_2023 = 1_700_000_000
YEAR_2100 = 4_102_444_800


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def js(value) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def header(**overrides):
    h = {"alg": "HS256", "typ": "at+jwt", "kid": CURRENT_KID}
    h.update(overrides)
    return {k: v for k, v in h.items() if v is not None}


def claims(**overrides):
    c = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": USER,
        "sid": SESSION,
        "role": "user",
        "iat": EPOCH_2023,
        "nbf": EPOCH_2023,
        "exp": YEAR_2100,
        "jti": JTI,
    }
    c.update(overrides)
    return {k: v for k, v in c.items() if v is not None}


def sign(secret: bytes, h: bytes, p: bytes) -> str:
    message = f"{b64(h)}.{b64(p)}"
    return f"{message}.{b64(hmac.new(secret, message.encode(), hashlib.sha256).digest())}"


def token(h=None, c=None, secret=CURRENT_SECRET) -> str:
    return sign(secret, js(h if h is not None else header()), js(c if c is not None else claims()))


# (name, header, claims, secret) for the token targets.
TOKEN_CASES = [
    ("valid_current", header(), claims(), CURRENT_SECRET),
    ("valid_previous_admin", header(kid=PREVIOUS_KID), claims(role="admin"), PREVIOUS_SECRET),
    ("valid_typ_media_type", header(typ="application/AT+JWT"), claims(), CURRENT_SECRET),
    ("expired", header(), claims(exp=EPOCH_2023 + 900), CURRENT_SECRET),
    ("not_yet_valid", header(), claims(nbf=YEAR_2100 - 60), CURRENT_SECRET),
    ("wrong_audience", header(), claims(aud="other-api"), CURRENT_SECRET),
    ("audience_array", header(), claims(aud=[AUDIENCE]), CURRENT_SECRET),
    ("wrong_issuer", header(), claims(iss="https://evil.invalid"), CURRENT_SECRET),
    ("missing_sub", header(), claims(sub=None), CURRENT_SECRET),
    ("exp_float", header(), claims(exp=4102444800.5), CURRENT_SECRET),
    ("exp_string", header(), claims(exp="4102444800"), CURRENT_SECRET),
    ("role_root", header(), claims(role="root"), CURRENT_SECRET),
    ("alg_hs512", header(alg="HS512"), claims(), CURRENT_SECRET),
    ("typ_jwt", header(typ="JWT"), claims(), CURRENT_SECRET),
    ("no_typ", header(typ=None), claims(), CURRENT_SECRET),
    ("jku", header(jku="https://evil.invalid/jwks.json"), claims(), CURRENT_SECRET),
    ("jwk_null", header(jwk=None), claims(), CURRENT_SECRET),
    ("unknown_kid", header(kid="someone-else"), claims(), CURRENT_SECRET),
    ("no_kid", header(kid=None), claims(), CURRENT_SECRET),
    ("foreign_key", header(), claims(), FOREIGN_SECRET),
    ("crit", header(crit=["exp"]), claims(), CURRENT_SECRET),
]


def write(target: str, name: str, data: bytes) -> None:
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def token_seeds():
    for name, h, c, secret in TOKEN_CASES:
        write("token_verify", name, sign(secret, js(h), js(c)).encode())
    valid = token()
    head, payload, sig = valid.split(".")
    alg_none = f"{b64(js({'alg': 'none', 'typ': 'at+jwt', 'kid': CURRENT_KID}))}.{payload}."
    tampered = f"{head}.{b64(js(claims(role='admin')))}.{sig}"
    for name, text in [
        ("alg_none", alg_none),
        ("tampered_payload", tampered),
        ("padded_signature", valid + "="),
        ("four_parts", valid + ".x"),
        ("empty", ""),
        ("dots", ".."),
        ("abc", "a.b.c"),
    ]:
        write("token_verify", name, text.encode())

    # token_structured: mode byte, header JSON, 0xFF, payload JSON.
    for name, h, c, secret in TOKEN_CASES:
        if secret == FOREIGN_SECRET:
            mode = 2
        elif secret == PREVIOUS_SECRET:
            mode = 1
        else:
            mode = 0
        write("token_structured", name, bytes([mode]) + js(h) + b"\xff" + js(c))
    write("token_structured", "flipped_signature", bytes([3]) + js(header()) + b"\xff" + js(claims()))
    write("token_structured", "empty_parts", bytes([0, 0xFF]))
    write(
        "token_structured",
        "duplicate_exp",
        bytes([0]) + js(header()) + b"\xff" + js(claims())[:-1] + b',"exp":1}',
    )


BODIES = {
    "body_signup": [
        ("valid", {"email": "ada@example.com", "password": "correct horse battery staple"}),
        ("nfkc_password", {"email": "ada@example.com", "password": "\uff50\uff41\uff53\uff53\uff57\uff4f\uff52\uff44\uff11\uff12"}),
        ("common_password", {"email": "ada@example.com", "password": "password123"}),
        ("password_is_email", {"email": "Ada@Example.com", "password": "ada@example.com"}),
        ("mass_assignment", {"email": "ada@example.com", "password": "correct horse", "role": "admin"}),
        ("missing_password", {"email": "ada@example.com"}),
        ("wrong_type", {"email": ["ada@example.com"], "password": 12345678}),
        ("nul", {"email": "ada@example.com\u0000", "password": "correct horse"}),
        ("bad_email", {"email": "ada@localhost", "password": "correct horse battery"}),
        ("quoted_local", {"email": "\"ada lovelace\"@example.com", "password": "correct horse battery"}),
    ],
    "body_login": [
        ("valid", {"email": " Ada@Example.com ", "password": "correct horse battery staple"}),
        ("unknown_field", {"email": "ada@example.com", "password": "x", "remember": True}),
        ("null_password", {"email": "ada@example.com", "password": None}),
    ],
    "body_refresh": [
        ("valid", {"refresh_token": b64(bytes(range(32)))}),
        ("number", {"refresh_token": 1}),
        ("extra", {"refresh_token": "x", "session": "y"}),
    ],
    "body_tasks_create": [
        ("valid", {"title": "Buy milk", "description": "2 litres", "completed": False}),
        ("title_only", {"title": "Buy milk"}),
        ("null_description", {"title": "Buy milk", "description": None}),
        ("completed_string", {"title": "Buy milk", "completed": "yes"}),
        ("nested_nul", {"title": "Buy milk", "description": "a\u0000b"}),
        ("owner_injection", {"title": "x", "user_id": "0190a5b2-7c3d-7e4f-8a9b-0c1d2e3f4a5b"}),
    ],
    "body_tasks_update": [
        ("empty", {}),
        ("clear_description", {"description": None}),
        ("all", {"title": "Buy oat milk", "description": "1 litre", "completed": True}),
        ("null_title", {"title": None}),
        ("completed_null", {"completed": None}),
        ("title_array", {"title": ["a", "b\u0000"]}),
    ],
    "body_account_password": [
        ("valid", {"current_password": "correct horse battery staple", "new_password": "another long passphrase"}),
        ("missing_current", {"new_password": "another long passphrase"}),
        ("short_new", {"current_password": "x", "new_password": "short"}),
    ],
    "body_account_delete": [
        ("valid", {"password": "correct horse battery staple"}),
        ("empty", {}),
        ("bool", {"password": True}),
    ],
    "body_admin_patch": [
        ("role_admin", {"role": "admin"}),
        ("disable", {"disabled": True}),
        ("both_null", {"role": None, "disabled": None}),
        ("role_root", {"role": "root"}),
        ("empty", {}),
        ("role_user_enable", {"role": "user", "disabled": False}),
    ],
}

RAW_BODIES = [
    ("not_object", b"[1,2,3]"),
    ("string", b'"hello"'),
    ("truncated", b'{"a":'),
    ("invalid_utf8", b'{"\xc3\x28":1}'),
    ("empty", b""),
    ("deep", b'{"x":' + b"[" * 200 + b"]" * 200 + b"}"),
    ("escaped_nul_key", b'{"\\u0000":1}'),
    ("empty_key", b'{"":1}'),
    ("lone_surrogate", b'{"x":"\\ud800"}'),
    ("big_number", b'{"x":1e999}'),
    ("bom", b'\xef\xbb\xbf{}'),
]


def body_seeds():
    for target, cases in BODIES.items():
        for name, value in cases:
            write(target, name, json.dumps(value, ensure_ascii=False).encode())
        for name, data in RAW_BODIES:
            write(target, name, data)
    # A duplicate key: the generic JSON value keeps the last one.
    write("body_signup", "duplicate_key", b'{"email":"a@b.c","email":"ada@example.com","password":"correct horse"}')


def cursor_text(micros: int, uid: str) -> str:
    return b64(f"{micros}:{uid}".encode())


def cursor_seeds():
    uid = "0190a5b2-7c3d-7e4f-8a9b-0c1d2e3f4a5b"
    cases = [
        ("valid", cursor_text(1_700_000_000_123_456, uid)),
        ("epoch", cursor_text(0, uid)),
        ("negative", cursor_text(-1_000_000, uid)),
        ("year_9999", cursor_text(253_402_300_799_999_999, uid)),
        ("year_10000", cursor_text(253_402_300_800_000_000, uid)),
        ("plus_sign", b64(f"+1:{uid}".encode())),
        ("uppercase_uuid", cursor_text(1, uid.upper())),
        ("simple_uuid", cursor_text(1, uid.replace("-", ""))),
        ("padded", cursor_text(1_700_000_000_123_456, uid) + "="),
        ("std_alphabet", base64.b64encode(f"1:{uid}".encode()).decode()),
        ("extra_colon", cursor_text(1, uid + ":x")),
        ("empty", ""),
    ]
    for name, text in cases:
        write("cursor_decode", name, text.encode())
    # cursor_roundtrip reads (i64, u128, u16, i32) from raw bytes.
    for name, data in [
        ("zeros", bytes(30)),
        ("ones", b"\xff" * 30),
        ("mixed", bytes(range(30))),
        ("recent", (1_700_000_000_123_456).to_bytes(8, "little") + bytes.fromhex("0190a5b27c3d7e4f8a9b0c1d2e3f4a5b") + b"\x39\x05\x10\x0e\x00\x00"),
    ]:
        write("cursor_roundtrip", name, data)


def bearer_seeds():
    valid = token()
    cases = [
        ("valid_token", f"Bearer {valid}"),
        ("valid_admin", f"Bearer {token(c=claims(role='admin'))}"),
        ("expired", f"Bearer {token(c=claims(exp=EPOCH_2023))}"),
        ("padding", "Bearer abc=="),
        ("lowercase_scheme", f"bearer {valid}"),
        ("two_spaces", f"Bearer  {valid}"),
        ("trailing_space", f"Bearer {valid} "),
        ("tab", f"Bearer\t{valid}"),
        ("two_tokens", "Bearer abc def"),
        ("basic", "Basic dXNlcjpwYXNz"),
        ("scheme_only", "Bearer"),
        ("scheme_space", "Bearer "),
        ("only_padding", "Bearer ="),
        ("inner_equals", "Bearer a=b"),
        ("all_chars", "Bearer -._~+/09AZaz=="),
    ]
    for name, text in cases:
        write("bearer_header", name, text.encode())


def method_arn_seeds():
    base = "arn:aws:execute-api:eu-west-1:123456789012:abc123/v1"
    sep = b"\xff"

    def case(flags, arn, path, text, *patterns):
        return bytes([flags]) + sep.join(x.encode() for x in (arn, path, text) + patterns)

    get, post, patch, delete = 0 << 1, 1 << 1, 2 << 1, 3 << 1
    cases = [
        ("user_get_task", case(get, f"{base}/GET/tasks/42", "/tasks/42", f"{base}/GET/tasks/42", f"{base}/GET/tasks/*")),
        ("user_admin_route", case(get, f"{base}/GET/admin/users", "/admin/users", f"{base}/GET/admin/users", f"{base}/*", f"!{base}/GET/admin/*")),
        ("admin_patch_user", case(1 | patch, f"{base}/PATCH/admin/users/7", "/admin/users/7", "a/b/c", "a/*/c", "a/?/c")),
        ("user_logout", case(post, f"{base}/POST/auth/logout", "/auth/logout", "xyz", "*", "!x?z")),
        ("admin_delete_me", case(1 | delete, f"{base}/DELETE/auth/me", "/auth/me", "", "*", "?")),
        ("stage_only", case(0, base, "/tasks", "aaaa", "*a*a*a")),
        ("no_stage", case(0, "arn:aws:execute-api:eu-west-1:123456789012:abc123", "/tasks", "", "")),
        ("empty_stage", case(0, "arn:aws:execute-api:eu-west-1:123456789012:abc123//GET/tasks", "/tasks", "", "")),
        ("colon_in_api", case(0, "arn:aws:execute-api:r:a:ab:c/v1/GET/x", "/tasks/a/b", "a*b", "a\\*b")),
        ("s3_arn", case(0, "arn:aws:s3:::bucket/key", "/tasks", "", "")),
        ("wildcard_arn", case(0, "arn:*:execute-api:*:*:*/*/*", "/tasks", "", "")),
        ("local", case(1, "arn:aws:execute-api:local:000000000000:local/local/GET/admin/users", "/admin/users", "", "")),
        ("empty", b""),
    ]
    for name, data in cases:
        write("method_arn", name, data)


def main():
    if os.path.isdir(CORPUS):
        shutil.rmtree(CORPUS)
    token_seeds()
    body_seeds()
    cursor_seeds()
    bearer_seeds()
    method_arn_seeds()


if __name__ == "__main__":
    main()
