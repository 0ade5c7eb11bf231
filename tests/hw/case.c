/* SPDX-License-Identifier: MIT */
/*
 * Parser and formatter of the `pgm walk` case and result lines (case.h).
 */
#include "case.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static const char *const mode_names[] = {
    [WCASE_REAL] = "real", [WCASE_PROT] = "prot", [WCASE_32] = "32",
    [WCASE_PAE] = "pae",   [WCASE_AMD64] = "amd64", [WCASE_LA57] = "la57",
};

const char *wcase_mode_name(enum wcase_mode mode)
{
    if ((unsigned)mode < sizeof(mode_names) / sizeof(mode_names[0]))
        return mode_names[mode];
    return "?";
}

unsigned wcase_default_memsize(enum wcase_mode mode)
{
    return mode == WCASE_32 ? 4 : 8;
}

void wcase_init(struct wcase *c)
{
    memset(c, 0, sizeof(*c));
    c->mode = WCASE_AMD64;
    c->acc = 'r';
    c->gbpages = true;
    c->maxphyaddr = 52;
}

static void set_reason(char *reason, size_t len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_reason(char *reason, size_t len, const char *fmt, ...)
{
    va_list ap;

    if (!reason || !len)
        return;
    va_start(ap, fmt);
    vsnprintf(reason, len, fmt, ap);
    va_end(ap);
}

/* Parse a number ("0x" hex or decimal) occupying exactly [s, s+n). */
static bool parse_num(const char *s, size_t n, uint64_t *out)
{
    uint64_t v = 0;
    unsigned base = 10;
    size_t i = 0;

    if (n >= 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
        base = 16;
        i = 2;
    }
    if (i == n)
        return false;
    for (; i < n; i++) {
        unsigned d;
        char ch = s[i];

        if (ch >= '0' && ch <= '9')
            d = (unsigned)(ch - '0');
        else if (base == 16 && ch >= 'a' && ch <= 'f')
            d = (unsigned)(ch - 'a' + 10);
        else if (base == 16 && ch >= 'A' && ch <= 'F')
            d = (unsigned)(ch - 'A' + 10);
        else
            return false;
        if (v > (UINT64_MAX - d) / base)
            return false;
        v = v * base + d;
    }
    *out = v;
    return true;
}

static bool is_blank_or_comment(const char *line)
{
    while (*line && isspace((unsigned char)*line))
        line++;
    return *line == '\0' || *line == '#';
}

static int parse_mem(const char *v, size_t n, struct wcase *c, bool *explicit_size,
                     char *reason, size_t reason_len)
{
    size_t i = 0;

    if (n == 0) {
        set_reason(reason, reason_len, "empty mem");
        return -1;
    }
    while (i < n) {
        size_t end = i, colon[2];
        unsigned ncolon = 0;
        uint64_t gpa, val, size = 0;
        struct wcase_mem *m;

        while (end < n && v[end] != ',') {
            if (v[end] == ':') {
                if (ncolon == 2) {
                    set_reason(reason, reason_len, "bad mem item");
                    return -1;
                }
                colon[ncolon++] = end;
            }
            end++;
        }
        if (ncolon < 1) {
            set_reason(reason, reason_len, "bad mem item (want GPA:VAL[:SIZE])");
            return -1;
        }
        if (!parse_num(v + i, colon[0] - i, &gpa)) {
            set_reason(reason, reason_len, "bad mem gpa");
            return -1;
        }
        {
            size_t vend = ncolon == 2 ? colon[1] : end;

            if (!parse_num(v + colon[0] + 1, vend - colon[0] - 1, &val)) {
                set_reason(reason, reason_len, "bad mem value");
                return -1;
            }
        }
        if (ncolon == 2) {
            if (!parse_num(v + colon[1] + 1, end - colon[1] - 1, &size) ||
                (size != 4 && size != 8)) {
                set_reason(reason, reason_len, "bad mem size (want 4 or 8)");
                return -1;
            }
        }
        if (c->nmem == WCASE_MAX_MEM) {
            set_reason(reason, reason_len, "too many mem items (max %d)", WCASE_MAX_MEM);
            return -1;
        }
        explicit_size[c->nmem] = ncolon == 2;
        m = &c->mem[c->nmem++];
        m->gpa = gpa;
        m->val = val;
        m->size = (unsigned)size;
        i = end;
        if (i < n) {
            i++; /* ',' */
            if (i == n) {
                set_reason(reason, reason_len, "trailing comma in mem");
                return -1;
            }
        }
    }
    return 0;
}

int wcase_parse(const char *line, struct wcase *c, char *reason, size_t reason_len)
{
    bool explicit_size[WCASE_MAX_MEM] = {false};
    bool have_mode = false;
    const char *p = line;

    wcase_init(c);
    if (reason && reason_len)
        reason[0] = '\0';
    if (is_blank_or_comment(line))
        return 0;

    for (;;) {
        const char *tok, *eq, *val;
        size_t klen, vlen, toklen;
        uint64_t num = 0;
        bool numeric;

        while (*p && isspace((unsigned char)*p))
            p++;
        if (!*p)
            break;
        tok = p;
        while (*p && !isspace((unsigned char)*p))
            p++;
        toklen = (size_t)(p - tok);
        eq = memchr(tok, '=', toklen);
        if (!eq) {
            set_reason(reason, reason_len, "token without '=': %.*s", (int)toklen, tok);
            return -1;
        }
        klen = (size_t)(eq - tok);
        val = eq + 1;
        vlen = toklen - klen - 1;
        numeric = parse_num(val, vlen, &num);

#define KEY(name) (klen == sizeof(name) - 1 && memcmp(tok, name, klen) == 0)
#define NEED_NUM()                                                                    \
    do {                                                                              \
        if (!numeric) {                                                               \
            set_reason(reason, reason_len, "bad number for %.*s", (int)klen, tok);    \
            return -1;                                                                \
        }                                                                             \
    } while (0)
#define FLAG(name, field)                                                             \
    else if (KEY(name)) {                                                             \
        NEED_NUM();                                                                   \
        if (num > 1) {                                                                \
            set_reason(reason, reason_len, "%s must be 0 or 1", name);                \
            return -1;                                                                \
        }                                                                             \
        c->field = num != 0;                                                          \
    }

        if (KEY("mode")) {
            unsigned m;
            bool found = false;

            for (m = 0; m < sizeof(mode_names) / sizeof(mode_names[0]); m++) {
                if (strlen(mode_names[m]) == vlen && memcmp(mode_names[m], val, vlen) == 0) {
                    c->mode = (enum wcase_mode)m;
                    found = true;
                }
            }
            if (!found) {
                set_reason(reason, reason_len, "bad mode");
                return -1;
            }
            have_mode = true;
        } else if (KEY("cpl")) {
            NEED_NUM();
            if (num > 3) {
                set_reason(reason, reason_len, "cpl must be 0..3");
                return -1;
            }
            c->cpl = (unsigned)num;
        } else if (KEY("acc")) {
            if (vlen != 1 || (val[0] != 'r' && val[0] != 'w' && val[0] != 'x')) {
                set_reason(reason, reason_len, "acc must be r, w or x");
                return -1;
            }
            c->acc = val[0];
        } else if (KEY("va")) {
            NEED_NUM();
            c->va = num;
        } else if (KEY("cr3")) {
            NEED_NUM();
            c->cr3 = num;
        }
        FLAG("wp", wp)
        FLAG("pse", pse)
        FLAG("pge", pge)
        FLAG("smep", smep)
        FLAG("smap", smap)
        FLAG("pke", pke)
        FLAG("nxe", nxe)
        FLAG("ac", ac)
        FLAG("gbpages", gbpages)
        else if (KEY("pkru")) {
            NEED_NUM();
            if (num > UINT32_MAX) {
                set_reason(reason, reason_len, "pkru out of range");
                return -1;
            }
            c->pkru = (uint32_t)num;
        } else if (KEY("maxphyaddr")) {
            NEED_NUM();
            if (num < 32 || num > 52) {
                set_reason(reason, reason_len, "maxphyaddr must be 32..52");
                return -1;
            }
            c->maxphyaddr = (unsigned)num;
        } else if (KEY("mem")) {
            if (parse_mem(val, vlen, c, explicit_size, reason, reason_len) < 0)
                return -1;
        } else {
            set_reason(reason, reason_len, "unknown key %.*s", (int)klen, tok);
            return -1;
        }
#undef FLAG
#undef NEED_NUM
#undef KEY
    }
    (void)have_mode;

    if (c->mode <= WCASE_PAE) {
        if (c->va > UINT32_MAX) {
            set_reason(reason, reason_len, "va must be < 2^32 in this mode");
            return -1;
        }
        if (c->cr3 > UINT32_MAX) {
            set_reason(reason, reason_len, "cr3 must be < 2^32 in this mode");
            return -1;
        }
    }
    for (unsigned i = 0; i < c->nmem; i++) {
        struct wcase_mem *m = &c->mem[i];

        if (!explicit_size[i])
            m->size = wcase_default_memsize(c->mode);
        if (m->size == 4 && m->val > UINT32_MAX) {
            set_reason(reason, reason_len, "mem value too large for 4 bytes");
            return -1;
        }
        if (m->gpa % m->size) {
            set_reason(reason, reason_len, "mem gpa not aligned to its size");
            return -1;
        }
        if (m->gpa >= WCASE_RAM_SIZE || m->gpa + m->size > WCASE_RAM_SIZE) {
            set_reason(reason, reason_len, "mem gpa outside guest RAM");
            return -1;
        }
    }
    return 1;
}

/* Bounded appender. */
struct sbuf {
    char *buf;
    size_t len, pos;
};

static void sb_printf(struct sbuf *sb, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void sb_printf(struct sbuf *sb, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (sb->pos >= sb->len)
        return;
    va_start(ap, fmt);
    n = vsnprintf(sb->buf + sb->pos, sb->len - sb->pos, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    sb->pos += (size_t)n;
    if (sb->pos >= sb->len)
        sb->pos = sb->len - 1;
}

void wcase_format(const struct wcase *c, char *buf, size_t len)
{
    struct sbuf sb = {buf, len, 0};

    if (!len)
        return;
    buf[0] = '\0';
    sb_printf(&sb, "mode=%s cpl=%u acc=%c va=0x%llx cr3=0x%llx", wcase_mode_name(c->mode), c->cpl,
              c->acc, (unsigned long long)c->va, (unsigned long long)c->cr3);
#define F(name, field)                                                                \
    if (c->field)                                                                     \
        sb_printf(&sb, " " name "=1");
    F("wp", wp)
    F("pse", pse)
    F("pge", pge)
    F("smep", smep)
    F("smap", smap)
    F("pke", pke)
    F("nxe", nxe)
    F("ac", ac)
#undef F
    if (!c->gbpages)
        sb_printf(&sb, " gbpages=0");
    if (c->pkru)
        sb_printf(&sb, " pkru=0x%x", (unsigned)c->pkru);
    if (c->maxphyaddr != 52)
        sb_printf(&sb, " maxphyaddr=%u", c->maxphyaddr);
    for (unsigned i = 0; i < c->nmem; i++) {
        const struct wcase_mem *m = &c->mem[i];

        sb_printf(&sb, "%s0x%llx:0x%llx", i ? "," : " mem=", (unsigned long long)m->gpa,
                  (unsigned long long)m->val);
        if (m->size != wcase_default_memsize(c->mode))
            sb_printf(&sb, ":%u", m->size);
    }
}

static const char *size_name(unsigned shift)
{
    switch (shift) {
    case 12:
        return "4k";
    case 21:
        return "2m";
    case 22:
        return "4m";
    case 30:
        return "1g";
    default:
        return "?";
    }
}

void wresult_format(const struct wresult *r, const struct wcase *c, char *buf, size_t len)
{
    struct sbuf sb = {buf, len, 0};

    if (!len)
        return;
    buf[0] = '\0';
    switch (r->kind) {
    case WRES_OK:
        sb_printf(&sb, "fault=0 gpa=0x%llx size=%s", (unsigned long long)r->gpa,
                  size_name(r->size_shift));
        break;
    case WRES_PF:
        sb_printf(&sb, "fault=1 ec=0x%x", (unsigned)r->ec);
        break;
    case WRES_GP:
        sb_printf(&sb, "gp=1");
        break;
    case WRES_ERROR:
        sb_printf(&sb, "error=%s", r->reason);
        return;
    case WRES_SKIP:
        sb_printf(&sb, "skip=%s", r->reason);
        return;
    }
    if (c) {
        for (unsigned i = 0; i < c->nmem && i < r->nmem; i++)
            sb_printf(&sb, "%s0x%llx:0x%llx", i ? "," : " mem=",
                      (unsigned long long)c->mem[i].gpa, (unsigned long long)r->memval[i]);
    }
}

int wresult_parse(const char *line, struct wresult *r)
{
    const char *p = line;
    bool have_fault = false, have_gp = false, have_gpa = false, have_size = false,
         have_ec = false;
    int fault = -1;

    memset(r, 0, sizeof(*r));
    if (is_blank_or_comment(line))
        return 0;
    while (*p && isspace((unsigned char)*p))
        p++;
    /* error= and skip= take the rest of the line as the reason. */
    if (strncmp(p, "error=", 6) == 0 || strncmp(p, "skip=", 5) == 0) {
        size_t n;
        const char *rs;

        r->kind = p[0] == 'e' ? WRES_ERROR : WRES_SKIP;
        rs = strchr(p, '=') + 1;
        n = strlen(rs);
        while (n && isspace((unsigned char)rs[n - 1]))
            n--;
        if (n >= sizeof(r->reason))
            n = sizeof(r->reason) - 1;
        memcpy(r->reason, rs, n);
        r->reason[n] = '\0';
        return 1;
    }

    for (;;) {
        const char *tok, *eq, *val;
        size_t klen, vlen, toklen;
        uint64_t num = 0;
        bool numeric;

        while (*p && isspace((unsigned char)*p))
            p++;
        if (!*p)
            break;
        tok = p;
        while (*p && !isspace((unsigned char)*p))
            p++;
        toklen = (size_t)(p - tok);
        eq = memchr(tok, '=', toklen);
        if (!eq)
            return -1;
        klen = (size_t)(eq - tok);
        val = eq + 1;
        vlen = toklen - klen - 1;
        numeric = parse_num(val, vlen, &num);
#define KEY(name) (klen == sizeof(name) - 1 && memcmp(tok, name, klen) == 0)
        if (KEY("fault")) {
            if (!numeric || num > 1)
                return -1;
            fault = (int)num;
            have_fault = true;
        } else if (KEY("gp")) {
            if (!numeric || num != 1)
                return -1;
            have_gp = true;
        } else if (KEY("gpa")) {
            if (!numeric)
                return -1;
            r->gpa = num;
            have_gpa = true;
        } else if (KEY("ec")) {
            if (!numeric || num > UINT32_MAX)
                return -1;
            r->ec = (uint32_t)num;
            have_ec = true;
        } else if (KEY("size")) {
            if (vlen == 2 && memcmp(val, "4k", 2) == 0)
                r->size_shift = 12;
            else if (vlen == 2 && memcmp(val, "2m", 2) == 0)
                r->size_shift = 21;
            else if (vlen == 2 && memcmp(val, "4m", 2) == 0)
                r->size_shift = 22;
            else if (vlen == 2 && memcmp(val, "1g", 2) == 0)
                r->size_shift = 30;
            else
                return -1;
            have_size = true;
        } else if (KEY("mem")) {
            size_t i = 0;

            while (i < vlen) {
                size_t end = i, colon = (size_t)-1;

                while (end < vlen && val[end] != ',') {
                    if (val[end] == ':') {
                        if (colon != (size_t)-1)
                            return -1;
                        colon = end;
                    }
                    end++;
                }
                if (colon == (size_t)-1 || r->nmem == WCASE_MAX_MEM)
                    return -1;
                if (!parse_num(val + i, colon - i, &r->memgpa[r->nmem]) ||
                    !parse_num(val + colon + 1, end - colon - 1, &r->memval[r->nmem]))
                    return -1;
                r->nmem++;
                i = end < vlen ? end + 1 : end;
            }
        } else {
            return -1;
        }
#undef KEY
    }
    if (have_gp && !have_fault) {
        r->kind = WRES_GP;
        return 1;
    }
    if (!have_fault || have_gp)
        return -1;
    if (fault == 0) {
        if (!have_gpa || !have_size)
            return -1;
        r->kind = WRES_OK;
    } else {
        if (!have_ec)
            return -1;
        r->kind = WRES_PF;
    }
    return 1;
}

uint64_t wcase_read_initial(const struct wcase *c, uint64_t gpa, unsigned size)
{
    uint64_t v = 0;

    for (unsigned b = 0; b < size && b < 8; b++) {
        uint64_t a = gpa + b;
        unsigned byte = 0;

        if (a < gpa || a >= WCASE_RAM_SIZE) {
            byte = 0xff;
        } else {
            for (unsigned i = 0; i < c->nmem; i++) {
                const struct wcase_mem *m = &c->mem[i];

                if (a >= m->gpa && a < m->gpa + m->size)
                    byte = (unsigned)(m->val >> (8 * (a - m->gpa))) & 0xff;
            }
        }
        v |= (uint64_t)byte << (8 * b);
    }
    return v;
}
