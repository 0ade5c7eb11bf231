/* SPDX-License-Identifier: MIT */
/* Parser of the `pgm walk` case format. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tools/walk_case.h"

/* "0x..." is hex, anything else decimal (a leading 0 is not octal). */
static bool
parse_u64(const char *s, size_t len, uint64_t *out)
{
    char buf[32];
    if (!len || len >= sizeof(buf))
        return false;
    memcpy(buf, s, len);
    buf[len] = 0;
    int base = 10;
    const char *p = buf;
    if (len > 2 && p[0] == '0' && (p[1] == 'x' || p[1] == 'X')) {
        base = 16;
        p += 2;
    }
    if (*p == '-' || *p == '+' || *p == ' ')
        return false;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(p, &end, base);
    if (errno || *end || end == p)
        return false;
    *out = v;
    return true;
}

static bool
parse_flag(const char *s, size_t len, bool *out)
{
    if (len != 1 || (s[0] != '0' && s[0] != '1'))
        return false;
    *out = s[0] == '1';
    return true;
}

static bool
parse_mode(const char *s, size_t len, enum pgm_guest_mode *out)
{
    static const struct { const char *name; enum pgm_guest_mode mode; } modes[] = {
        { "real", PGM_MODE_REAL }, { "prot", PGM_MODE_PROT },   { "32", PGM_MODE_32BIT },
        { "pae", PGM_MODE_PAE },   { "amd64", PGM_MODE_AMD64 }, { "la57", PGM_MODE_LA57 },
    };
    for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
        if (strlen(modes[i].name) == len && !memcmp(modes[i].name, s, len)) {
            *out = modes[i].mode;
            return true;
        }
    }
    return false;
}

#define FAIL(...)                                  \
    do {                                           \
        snprintf(err, errlen, __VA_ARGS__);        \
        return -1;                                 \
    } while (0)

/* mem=GPA:VAL[:SIZE],... ; sizes default per mode, so resolved after parsing. */
static int
parse_mem(const char *s, size_t len, struct walk_case *c, char *err, size_t errlen)
{
    const char *end = s + len;
    while (s < end) {
        const char *comma = memchr(s, ',', (size_t)(end - s));
        const char *item_end = comma ? comma : end;
        /* Split the item at ':' into 2 or 3 fields. */
        const char *f[3];
        size_t fl[3];
        unsigned nf = 0;
        const char *q = s;
        for (;;) {
            const char *colon = memchr(q, ':', (size_t)(item_end - q));
            if (nf == 3)
                FAIL("bad mem item (GPA:VAL[:SIZE])");
            f[nf] = q;
            fl[nf++] = (size_t)((colon ? colon : item_end) - q);
            if (!colon)
                break;
            q = colon + 1;
        }
        if (nf < 2)
            FAIL("bad mem item (GPA:VAL[:SIZE])");
        if (c->nmem == WALK_CASE_MAX_MEM)
            FAIL("too many mem items (max %d)", WALK_CASE_MAX_MEM);
        struct walk_case_mem *m = &c->mem[c->nmem++];
        uint64_t size = 0;
        if (!parse_u64(f[0], fl[0], &m->gpa) || !parse_u64(f[1], fl[1], &m->val))
            FAIL("bad mem number");
        if (nf == 3 && (!parse_u64(f[2], fl[2], &size) || (size != 4 && size != 8)))
            FAIL("mem size must be 4 or 8");
        m->size = (unsigned)size; /* 0: mode default, resolved later */
        s = comma ? comma + 1 : end;
        if (comma && s == end)
            FAIL("trailing comma in mem");
    }
    return 0;
}

int
walk_case_parse(const char *line, struct walk_case *c, char *err, size_t errlen)
{
    memset(c, 0, sizeof(*c));
    c->gbpages = true;
    c->maxphyaddr = 52;
    c->mode = PGM_MODE_COUNT;
    c->access = UINT32_MAX;
    bool have_va = false;

    const char *p = line;
    while (*p == ' ' || *p == '\t')
        p++;
    if (*p == '#' || *p == '\n' || *p == '\r' || *p == 0)
        return 0;

    while (*p && *p != '\n' && *p != '\r') {
        const char *tok = p;
        while (*p && *p != ' ' && *p != '\t' && *p != '\n' && *p != '\r')
            p++;
        size_t toklen = (size_t)(p - tok);
        while (*p == ' ' || *p == '\t')
            p++;
        const char *eq = memchr(tok, '=', toklen);
        if (!eq)
            FAIL("token without '=': %.*s", (int)(toklen > 32 ? 32 : toklen), tok);
        size_t klen = (size_t)(eq - tok);
        const char *v = eq + 1;
        size_t vlen = toklen - klen - 1;
        uint64_t num;
#define KEY(name) (klen == sizeof(name) - 1 && !memcmp(tok, name, klen))
#define FLAG(name, field)                                       \
        else if (KEY(name)) {                                   \
            if (!parse_flag(v, vlen, &c->field))                \
                FAIL("%s must be 0 or 1", name);                \
        }
        if (KEY("mode")) {
            if (!parse_mode(v, vlen, &c->mode))
                FAIL("unknown mode");
        } else if (KEY("cpl")) {
            if (!parse_u64(v, vlen, &num) || num > 3)
                FAIL("cpl must be 0..3");
            c->cpl = (unsigned)num;
        } else if (KEY("acc")) {
            if (vlen != 1 || !strchr("rwx", v[0]))
                FAIL("acc must be r, w or x");
            c->access = v[0] == 'w' ? PGM_ACCESS_WRITE : v[0] == 'x' ? PGM_ACCESS_FETCH : 0;
        } else if (KEY("va")) {
            if (!parse_u64(v, vlen, &c->va))
                FAIL("bad va");
            have_va = true;
        } else if (KEY("cr3")) {
            if (!parse_u64(v, vlen, &c->cr3))
                FAIL("bad cr3");
        }
        FLAG("wp", wp) FLAG("pse", pse) FLAG("pge", pge) FLAG("smep", smep)
        FLAG("smap", smap) FLAG("pke", pke) FLAG("nxe", nxe) FLAG("ac", ac)
        FLAG("gbpages", gbpages)
        else if (KEY("pkru")) {
            if (!parse_u64(v, vlen, &num) || num > UINT32_MAX)
                FAIL("bad pkru");
            c->pkru = (uint32_t)num;
        } else if (KEY("maxphyaddr")) {
            if (!parse_u64(v, vlen, &num) || num < 32 || num > 52)
                FAIL("maxphyaddr must be 32..52");
            c->maxphyaddr = (unsigned)num;
        } else if (KEY("mem")) {
            if (parse_mem(v, vlen, c, err, errlen) < 0)
                return -1;
        } else {
            FAIL("unknown key '%.*s'", (int)(klen > 32 ? 32 : klen), tok);
        }
#undef FLAG
#undef KEY
    }

    if (c->mode == PGM_MODE_COUNT)
        FAIL("missing mode");
    if (c->access == UINT32_MAX)
        FAIL("missing acc");
    if (!have_va)
        FAIL("missing va");
    bool long_mode = c->mode == PGM_MODE_AMD64 || c->mode == PGM_MODE_LA57;
    if (!long_mode && (c->va >> 32))
        FAIL("va must be below 2^32 in this mode");
    if (!long_mode && (c->cr3 >> 32))
        FAIL("cr3 must be below 2^32 in this mode");
    for (unsigned i = 0; i < c->nmem; i++) {
        struct walk_case_mem *m = &c->mem[i];
        if (!m->size)
            m->size = c->mode == PGM_MODE_32BIT ? 4 : 8;
        if (m->size == 4 && (m->val >> 32))
            FAIL("mem value does not fit in 4 bytes");
        if (m->gpa % m->size)
            FAIL("mem address not aligned to its size");
        if (m->gpa >= WALK_CASE_RAM_SIZE || WALK_CASE_RAM_SIZE - m->gpa < m->size)
            FAIL("mem address outside guest RAM (0..64 MiB)");
    }
    return 1;
}
