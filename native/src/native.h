/* Shared declarations of the _native extension's parts (codec, JSON canonicaliser, trace ring, data plane). */
#ifndef CLOVE_NATIVE_H
#define CLOVE_NATIVE_H
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

#define CLV_MAGIC 0x41474E54u
#define CLV_HEADER_SIZE 17
#define CLV_MAX_PAYLOAD (1u << 20)
#define CLV_SPLIT_OK 0
#define CLV_SPLIT_BAD_MAGIC 1
#define CLV_SPLIT_OVERSIZE 2
#define CLV_PROCESS_SLOW 3

/* Objects imported once at module init (owned references, never freed: the module lives forever). */
extern PyObject *clv_struct_error;   /* struct.error: the twin's exception for bad header fields */
extern PyObject *clv_json_loads;     /* json.loads, for the fallback path */
extern PyObject *clv_json_dumps;     /* json.dumps, for the fallback path */

/* ---- growable byte buffer ---------------------------------------------------------------------- */
typedef struct {
    char *data;
    size_t len, cap;
} clv_buf;

int clv_buf_reserve(clv_buf *b, size_t extra); /* 0 ok, -1 MemoryError set */
int clv_buf_put(clv_buf *b, const void *p, size_t n);
int clv_buf_puts(clv_buf *b, const char *s);
int clv_buf_putc(clv_buf *b, char c);
int clv_buf_put_i64(clv_buf *b, int64_t v);
int clv_buf_put_u64(clv_buf *b, uint64_t v);
void clv_buf_free(clv_buf *b);

/* ---- codec (codec.c) --------------------------------------------------------------------------- */
static inline void clv_put_le32(unsigned char *p, uint32_t v) {
    p[0] = (unsigned char)v; p[1] = (unsigned char)(v >> 8); p[2] = (unsigned char)(v >> 16);
    p[3] = (unsigned char)(v >> 24);
}
static inline void clv_put_le64(unsigned char *p, uint64_t v) {
    clv_put_le32(p, (uint32_t)v); clv_put_le32(p + 4, (uint32_t)(v >> 32));
}
static inline uint32_t clv_get_le32(const unsigned char *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
static inline uint64_t clv_get_le64(const unsigned char *p) {
    return (uint64_t)clv_get_le32(p) | ((uint64_t)clv_get_le32(p + 4) << 32);
}
/* Python-int position semantics of struct.unpack_from(buf, pos) (negative = from the end): the byte
 * offset of the header, or -1 with struct.error set. */
Py_ssize_t clv_header_offset(Py_ssize_t pos, Py_ssize_t end);
/* bytes(buf[start:stop]) with Python slice semantics (negative indexes count from the end). */
PyObject *clv_slice_bytes(const char *buf, Py_ssize_t end, Py_ssize_t start, Py_ssize_t stop);
/* When `pos` is not a C-sized int, the twin fails only if its loop runs (`len(buf) - pos >= 17`):
 * 1 = raise the pending exception, 0 = return the empty result (exception cleared), -1 = new error. */
int clv_loop_would_run(PyObject *buf, PyObject *pos);
extern PyMethodDef clv_codec_methods[];

/* ---- JSON canonicaliser (jsoncanon.c) ---------------------------------------------------------- */
/* A request payload reduced to the top-level fields the data plane reads. Every value is kept as its
 * canonical text, i.e. exactly what json.dumps(value) prints (strings: the text between the quotes,
 * which identifies the Python str uniquely), so the plane splices text and never re-encodes. */
typedef enum { JT_ABSENT = 0, JT_NULL, JT_TRUE, JT_FALSE, JT_INT, JT_BIGINT, JT_FLOAT, JT_STR, JT_ARRAY,
               JT_OBJECT } clv_jtype;
typedef enum { F_TO, F_TO_NAME, F_MESSAGE, F_MAX, F_INCLUDE_SELF, F_KEY, F_SCOPE, F_TTL, F_VALUE, F_PREFIX,
               F_NAME, F_COUNT } clv_field;
typedef struct {
    clv_jtype type;
    int64_t i;     /* JT_INT: the value; JT_BIGINT: its sign (+1 / -1) */
    double f;      /* JT_FLOAT */
    size_t off, len; /* canonical text in clv_jreq.text (JT_STR: with its quotes); len 0 = not kept */
} clv_jfield;
typedef struct {
    clv_buf text;
    clv_jfield f[F_COUNT];
} clv_jreq;
enum { CLV_REQ_OK = 0, CLV_REQ_MALFORMED = 1, CLV_REQ_NOT_OBJECT = 2 };
int clv_json_init(void);
/* Parse a request payload (empty means {} when empty_ok): CLV_REQ_* or -1 with a Python exception.
 * The common subset is handled in C; anything else goes through json.loads/json.dumps. */
int clv_json_request(const char *p, size_t n, int empty_ok, clv_jreq *req);
void clv_jreq_free(clv_jreq *req);
/* Append the canonical (ensure_ascii) JSON string text of a Python str, without quotes. */
int clv_json_str_text(PyObject *s, clv_buf *out);
/* The Python str whose canonical text (without quotes) is text[0:n]. */
PyObject *clv_json_text_to_str(const char *text, size_t n);

/* ---- trace ring (tracering.c) ------------------------------------------------------------------ */
extern PyTypeObject clv_TraceRingType;
void clv_tracering_init(void); /* CRC table */
typedef struct {
    uint32_t kind, opcode, result;
    int64_t agent_id, peer_id, world_id, service_ns, queue_ns; /* u32 fields, saturated on write */
    int64_t t_ns;
    uint64_t aux;
    const char *req, *resp;
    size_t req_len, resp_len;
} clv_trace_rec;
/* Append one record to a TraceRing (no Python call); 0 ok, -1 exception set. */
int clv_tracering_append(PyObject *ring, const clv_trace_rec *rec);

/* ---- data plane (dataplane.c) ------------------------------------------------------------------ */
extern PyTypeObject clv_DataPlaneType;

/* ---- argument parsing for METH_FASTCALL | METH_KEYWORDS (module.c) ----------------------------- */
/* Fill out[0..nnames) from positional args and keywords by name (borrowed refs, NULL when absent);
 * the first `nreq` are required. Raises TypeError like a Python signature would. */
int clv_parse_args(const char *fname, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames,
                   const char *const *names, int nnames, int nreq, PyObject **out);
#endif
