/* Strict JSON scanner for data-plane requests, emitting canonical json.dumps text (", "/": "
 * separators, ensure_ascii escapes). Written by hand because no C JSON library reproduces Python's
 * exact output; it accepts only a subset (objects, arrays, strings, int64 ints, true/false/null,
 * nesting <= 64, no duplicate keys) and hands everything else to json.loads/json.dumps through the
 * C API, so results, errors included, are those of the twin by construction. */
#include "native.h"

#include <string.h>

#define MAX_DEPTH 64
#define MAX_KEYS 64

static const char *const FIELD_NAMES[F_COUNT] = {
    "to", "to_name", "message", "max", "include_self", "key", "scope", "ttl", "value", "prefix", "name",
};
static PyObject *field_keys[F_COUNT]; /* interned str keys for the fallback path */

int clv_json_init(void) {
    for (int i = 0; i < F_COUNT; i++) {
        field_keys[i] = PyUnicode_InternFromString(FIELD_NAMES[i]);
        if (field_keys[i] == NULL) return -1;
    }
    return 0;
}

void clv_jreq_free(clv_jreq *req) { clv_buf_free(&req->text); }

/* ---- canonical string text --------------------------------------------------------------------- */
static const char HEX[] = "0123456789abcdef";

/* Canonical text of one code unit (a surrogate half is escaped on its own, as json.dumps does). */
static int put_unit(clv_buf *b, uint32_t c) {
    if (clv_buf_reserve(b, 12) < 0) return -1;
    char *o = b->data + b->len;
    size_t n;
    if (c >= 0x20 && c < 0x7F && c != '"' && c != '\\') { o[0] = (char)c; n = 1; }
    else if (c == '"' || c == '\\') { o[0] = '\\'; o[1] = (char)c; n = 2; }
    else if (c == '\n') { o[0] = '\\'; o[1] = 'n'; n = 2; }
    else if (c == '\r') { o[0] = '\\'; o[1] = 'r'; n = 2; }
    else if (c == '\t') { o[0] = '\\'; o[1] = 't'; n = 2; }
    else if (c == '\b') { o[0] = '\\'; o[1] = 'b'; n = 2; }
    else if (c == '\f') { o[0] = '\\'; o[1] = 'f'; n = 2; }
    else if (c >= 0x10000) {
        uint32_t v = c - 0x10000, hi = 0xD800 | (v >> 10), lo = 0xDC00 | (v & 0x3FF);
        o[0] = '\\'; o[1] = 'u'; o[2] = HEX[hi >> 12]; o[3] = HEX[(hi >> 8) & 15]; o[4] = HEX[(hi >> 4) & 15];
        o[5] = HEX[hi & 15];
        o[6] = '\\'; o[7] = 'u'; o[8] = HEX[lo >> 12]; o[9] = HEX[(lo >> 8) & 15]; o[10] = HEX[(lo >> 4) & 15];
        o[11] = HEX[lo & 15];
        n = 12;
    } else {
        o[0] = '\\'; o[1] = 'u'; o[2] = HEX[c >> 12]; o[3] = HEX[(c >> 8) & 15]; o[4] = HEX[(c >> 4) & 15];
        o[5] = HEX[c & 15];
        n = 6;
    }
    b->len += n;
    return 0;
}

int clv_json_str_text(PyObject *s, clv_buf *out) {
    Py_ssize_t n = PyUnicode_GET_LENGTH(s);
    int kind = PyUnicode_KIND(s);
    const void *data = PyUnicode_DATA(s);
    for (Py_ssize_t i = 0; i < n; i++) {
        if (put_unit(out, PyUnicode_READ(kind, data, i)) < 0) return -1;
    }
    return 0;
}

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static int hex4(const char *p, uint32_t *out) {
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) {
        int h = hexval(p[i]);
        if (h < 0) return -1;
        v = (v << 4) | (uint32_t)h;
    }
    *out = v;
    return 0;
}

PyObject *clv_json_text_to_str(const char *t, size_t n) {
    Py_UCS4 *u = PyMem_Malloc((n ? n : 1) * sizeof(Py_UCS4));
    if (u == NULL) return PyErr_NoMemory();
    size_t k = 0, i = 0;
    while (i < n) {
        char c = t[i];
        if (c != '\\') { u[k++] = (unsigned char)c; i++; continue; }
        char e = i + 1 < n ? t[i + 1] : 0;
        uint32_t v = 0;
        if (e == 'u' && i + 6 <= n && hex4(t + i + 2, &v) == 0) {
            i += 6;
            uint32_t lo;
            if (v >= 0xD800 && v < 0xDC00 && i + 6 <= n && t[i] == '\\' && t[i + 1] == 'u' &&
                hex4(t + i + 2, &lo) == 0 && lo >= 0xDC00 && lo < 0xE000) {
                v = 0x10000 + ((v - 0xD800) << 10) + (lo - 0xDC00);
                i += 6;
            }
            u[k++] = v;
            continue;
        }
        switch (e) {
        case 'n': v = '\n'; break;
        case 'r': v = '\r'; break;
        case 't': v = '\t'; break;
        case 'b': v = '\b'; break;
        case 'f': v = '\f'; break;
        default: v = (unsigned char)e; break;
        }
        u[k++] = v;
        i += 2;
    }
    PyObject *s = PyUnicode_FromKindAndData(PyUnicode_4BYTE_KIND, u, (Py_ssize_t)k);
    PyMem_Free(u);
    return s;
}

/* ---- the scanner ------------------------------------------------------------------------------- */
typedef struct {
    const unsigned char *p, *end;
    clv_buf *out;
    int oom;
} scanner;

enum { S_OK = 0, S_BAIL = 1, S_ERR = -1 };

static void skip_ws(scanner *s) {
    while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r')) s->p++;
}

/* One UTF-8 sequence starting at p (strict, as bytes.decode('utf-8')): its code point, or -1. */
static int32_t utf8_char(const unsigned char **pp, const unsigned char *end) {
    const unsigned char *p = *pp;
    unsigned c = p[0];
    int n;
    uint32_t v, lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) { n = 1; v = c & 0x1F; }
    else if (c >= 0xE0 && c <= 0xEF) {
        n = 2; v = c & 0x0F;
        if (c == 0xE0) lo = 0xA0;
        if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 3; v = c & 0x07;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F;
    } else return -1;
    if (end - p <= n) return -1;
    for (int i = 1; i <= n; i++) {
        unsigned d = p[i];
        if (i == 1 ? (d < lo || d > hi) : (d < 0x80 || d > 0xBF)) return -1;
        v = (v << 6) | (d & 0x3F);
    }
    *pp = p + n + 1;
    return (int32_t)v;
}

/* A string at s->p (the opening quote): emits "canonical text" with quotes. */
static int scan_string(scanner *s) {
    s->p++;
    if (clv_buf_putc(s->out, '"') < 0) return S_ERR;
    for (;;) {
        const unsigned char *run = s->p;
        while (s->p < s->end && *s->p >= 0x20 && *s->p < 0x7F && *s->p != '"' && *s->p != '\\') s->p++;
        if (s->p > run && clv_buf_put(s->out, run, (size_t)(s->p - run)) < 0) return S_ERR;
        if (s->p >= s->end) return S_BAIL;
        unsigned c = *s->p;
        if (c == '"') { s->p++; return clv_buf_putc(s->out, '"') < 0 ? S_ERR : S_OK; }
        if (c < 0x20) return S_BAIL; /* json.loads(strict=True) rejects raw control characters */
        if (c == 0x7F) { s->p++; if (put_unit(s->out, c) < 0) return S_ERR; continue; }
        if (c >= 0x80) {
            int32_t v = utf8_char(&s->p, s->end);
            if (v < 0) return S_BAIL;
            if (put_unit(s->out, (uint32_t)v) < 0) return S_ERR;
            continue;
        }
        /* backslash */
        if (s->end - s->p < 2) return S_BAIL;
        unsigned e = s->p[1];
        uint32_t v;
        switch (e) {
        case '"': v = '"'; break;
        case '\\': v = '\\'; break;
        case '/': v = '/'; break;
        case 'b': v = '\b'; break;
        case 'f': v = '\f'; break;
        case 'n': v = '\n'; break;
        case 'r': v = '\r'; break;
        case 't': v = '\t'; break;
        case 'u':
            if (s->end - s->p < 6 || hex4((const char *)s->p + 2, &v) < 0) return S_BAIL;
            s->p += 4;
            break;
        default: return S_BAIL;
        }
        s->p += 2;
        /* A \\u pair of surrogates is one character to Python; escaping each half gives the same text. */
        if (put_unit(s->out, v) < 0) return S_ERR;
    }
}

static int scan_value(scanner *s, int depth, clv_jfield *top);

static int same_text(const clv_buf *b, size_t a_off, size_t a_len, size_t b_off, size_t b_len) {
    return a_len == b_len && memcmp(b->data + a_off, b->data + b_off, a_len) == 0;
}

/* An object: emits {"k": v, ...}. With `fields`, records the top-level members the plane reads. */
static int scan_object(scanner *s, int depth, clv_jfield *fields) {
    size_t koff[MAX_KEYS], klen[MAX_KEYS];
    int nkeys = 0, r;
    s->p++;
    if (clv_buf_putc(s->out, '{') < 0) return S_ERR;
    skip_ws(s);
    if (s->p < s->end && *s->p == '}') { s->p++; return clv_buf_putc(s->out, '}') < 0 ? S_ERR : S_OK; }
    for (;;) {
        if (s->p >= s->end || *s->p != '"' || nkeys == MAX_KEYS) return S_BAIL;
        size_t kstart = s->out->len;
        if ((r = scan_string(s)) != S_OK) return r;
        size_t ko = kstart + 1, kl = s->out->len - kstart - 2;
        for (int i = 0; i < nkeys; i++) {
            if (same_text(s->out, koff[i], klen[i], ko, kl)) return S_BAIL; /* duplicate: Python keeps the last */
        }
        koff[nkeys] = ko;
        klen[nkeys++] = kl;
        skip_ws(s);
        if (s->p >= s->end || *s->p != ':') return S_BAIL;
        s->p++;
        if (clv_buf_put(s->out, ": ", 2) < 0) return S_ERR;
        clv_jfield tmp, *slot = &tmp;
        if (fields != NULL) {
            for (int f = 0; f < F_COUNT; f++) {
                size_t fl = strlen(FIELD_NAMES[f]);
                if (fl == kl && memcmp(s->out->data + ko, FIELD_NAMES[f], fl) == 0) { slot = &fields[f]; break; }
            }
        }
        if ((r = scan_value(s, depth + 1, slot)) != S_OK) return r;
        skip_ws(s);
        if (s->p >= s->end) return S_BAIL;
        if (*s->p == '}') { s->p++; return clv_buf_putc(s->out, '}') < 0 ? S_ERR : S_OK; }
        if (*s->p != ',') return S_BAIL;
        s->p++;
        if (clv_buf_put(s->out, ", ", 2) < 0) return S_ERR;
        skip_ws(s);
    }
}

static int scan_array(scanner *s, int depth) {
    int r;
    s->p++;
    if (clv_buf_putc(s->out, '[') < 0) return S_ERR;
    skip_ws(s);
    if (s->p < s->end && *s->p == ']') { s->p++; return clv_buf_putc(s->out, ']') < 0 ? S_ERR : S_OK; }
    for (;;) {
        clv_jfield tmp;
        if ((r = scan_value(s, depth + 1, &tmp)) != S_OK) return r;
        skip_ws(s);
        if (s->p >= s->end) return S_BAIL;
        if (*s->p == ']') { s->p++; return clv_buf_putc(s->out, ']') < 0 ? S_ERR : S_OK; }
        if (*s->p != ',') return S_BAIL;
        s->p++;
        if (clv_buf_put(s->out, ", ", 2) < 0) return S_ERR;
    }
}

static int scan_literal(scanner *s, const char *word, clv_jtype type, clv_jfield *f) {
    size_t n = strlen(word);
    if ((size_t)(s->end - s->p) < n || memcmp(s->p, word, n) != 0) return S_BAIL;
    s->p += n;
    f->type = type;
    return clv_buf_put(s->out, word, n) < 0 ? S_ERR : S_OK;
}

/* An int that fits in int64 (at most 18 digits); floats, exponents and longer ints go to Python. */
static int scan_int(scanner *s, clv_jfield *f) {
    int neg = 0;
    if (*s->p == '-') { neg = 1; s->p++; }
    const unsigned char *d = s->p;
    if (s->p >= s->end || *s->p < '0' || *s->p > '9') return S_BAIL;
    if (*s->p == '0') s->p++;
    else while (s->p < s->end && *s->p >= '0' && *s->p <= '9') s->p++;
    if (s->p - d > 18) return S_BAIL;
    if (s->p < s->end && (*s->p == '.' || *s->p == 'e' || *s->p == 'E')) return S_BAIL;
    int64_t v = 0;
    for (const unsigned char *q = d; q < s->p; q++) v = v * 10 + (*q - '0');
    f->type = JT_INT;
    f->i = neg ? -v : v;
    return clv_buf_put_i64(s->out, f->i) < 0 ? S_ERR : S_OK;
}

static int scan_value(scanner *s, int depth, clv_jfield *f) {
    if (depth > MAX_DEPTH) return S_BAIL;
    skip_ws(s);
    if (s->p >= s->end) return S_BAIL;
    size_t start = s->out->len;
    int r;
    switch (*s->p) {
    case '{': f->type = JT_OBJECT; r = scan_object(s, depth, NULL); break;
    case '[': f->type = JT_ARRAY; r = scan_array(s, depth); break;
    case '"': f->type = JT_STR; r = scan_string(s); break;
    case 't': r = scan_literal(s, "true", JT_TRUE, f); break;
    case 'f': r = scan_literal(s, "false", JT_FALSE, f); break;
    case 'n': r = scan_literal(s, "null", JT_NULL, f); break;
    default: r = scan_int(s, f); break;
    }
    if (r != S_OK) return r;
    f->off = start;
    f->len = s->out->len - start;
    return S_OK;
}

/* ---- the fallback: json.loads / json.dumps ----------------------------------------------------- */
static int dumps_into(PyObject *v, clv_buf *out, size_t *off, size_t *len, int strip_quotes) {
    PyObject *t = PyObject_CallOneArg(clv_json_dumps, v);
    if (t == NULL) return -1;
    Py_ssize_t n;
    const char *p = PyUnicode_AsUTF8AndSize(t, &n);
    if (p == NULL) { Py_DECREF(t); return -1; }
    if (strip_quotes) { p++; n -= 2; }
    *off = out->len;
    *len = (size_t)n;
    int rc = clv_buf_put(out, p, (size_t)n);
    Py_DECREF(t);
    return rc;
}

static int fallback(const char *p, size_t n, clv_jreq *req) {
    PyObject *text = PyUnicode_DecodeUTF8(p, (Py_ssize_t)n, "strict");
    if (text == NULL) {
        if (!PyErr_ExceptionMatches(PyExc_UnicodeDecodeError)) return -1;
        PyErr_Clear();
        return CLV_REQ_MALFORMED;
    }
    PyObject *obj = PyObject_CallOneArg(clv_json_loads, text);
    Py_DECREF(text);
    if (obj == NULL) {
        if (!PyErr_ExceptionMatches(PyExc_ValueError) && !PyErr_ExceptionMatches(PyExc_RecursionError))
            return -1;
        PyErr_Clear();
        return CLV_REQ_MALFORMED;
    }
    if (!PyDict_Check(obj)) { Py_DECREF(obj); return CLV_REQ_NOT_OBJECT; }
    req->text.len = 0;
    memset(req->f, 0, sizeof req->f);
    int rc = CLV_REQ_OK;
    for (int i = 0; i < F_COUNT && rc == CLV_REQ_OK; i++) {
        PyObject *v = PyDict_GetItemWithError(obj, field_keys[i]);
        clv_jfield *f = &req->f[i];
        if (v == NULL) { if (PyErr_Occurred()) rc = -1; continue; }
        int overflow = 0;
        if (v == Py_None) f->type = JT_NULL;
        else if (v == Py_True) f->type = JT_TRUE;
        else if (v == Py_False) f->type = JT_FALSE;
        else if (PyLong_Check(v)) {
            f->i = PyLong_AsLongLongAndOverflow(v, &overflow);
            if (overflow) { f->type = JT_BIGINT; f->i = overflow; }
            else f->type = JT_INT;
        } else if (PyFloat_Check(v)) { f->type = JT_FLOAT; f->f = PyFloat_AS_DOUBLE(v); }
        else if (PyUnicode_Check(v)) f->type = JT_STR;
        else if (PyList_Check(v)) f->type = JT_ARRAY;
        else f->type = JT_OBJECT;
        if (i == F_MESSAGE || i == F_VALUE) {
            if (dumps_into(v, &req->text, &f->off, &f->len, 0) < 0) rc = -1;
        } else if (f->type == JT_STR) {
            f->off = req->text.len;
            if (clv_buf_putc(&req->text, '"') < 0 || clv_json_str_text(v, &req->text) < 0 ||
                clv_buf_putc(&req->text, '"') < 0)
                rc = -1;
            f->len = req->text.len - f->off;
        }
    }
    Py_DECREF(obj);
    return rc;
}

int clv_json_request(const char *p, size_t n, int empty_ok, clv_jreq *req) {
    memset(req->f, 0, sizeof req->f);
    req->text.len = 0;
    if (n == 0 && empty_ok) return CLV_REQ_OK;
    scanner s = {(const unsigned char *)p, (const unsigned char *)p + n, &req->text, 0};
    clv_jfield top = {0};
    skip_ws(&s);
    int r;
    if (s.p < s.end && *s.p == '{') {
        top.type = JT_OBJECT;
        r = scan_object(&s, 1, req->f);
    } else r = scan_value(&s, 1, &top);
    if (r == S_ERR) return -1;
    if (r == S_OK) {
        skip_ws(&s);
        if (s.p == s.end) return top.type == JT_OBJECT ? CLV_REQ_OK : CLV_REQ_NOT_OBJECT;
    }
    return fallback(p, n, req);
}
