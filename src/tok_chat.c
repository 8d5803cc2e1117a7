/* tok_chat: the Qwen3-VL Instruct chat prompt, id for id as transformers renders it.
 *
 * The reference renders chat_template.json (one system turn only if given, the user
 * turn's items in order, then "<|im_start|>assistant\n"), then Qwen3VLProcessor.__call__
 * replaces each <|image_pad|> by t*h*w/4 pads and each whole
 * "<|vision_start|><|video_pad|><|vision_end|>" by, per temporal group,
 * "<%.1f seconds><|vision_start|>" + h*w/4 pads + "<|vision_end|>", and tokenises the
 * resulting string. We render the same string with one pad per run (special tokens split
 * the text, so the other ids do not depend on how many pads stand there), encode it, and
 * widen each pad into its run. Counting is the same without the widening.
 *
 * Reference: transformers 4.57.1 models/qwen3_vl/processing_qwen3_vl.py
 * (Qwen3VLProcessor.__call__), tests/data/qwen3-vl-4b-instruct/chat_template.json. */
#include "tok_int.h"

#include "err.h"
#include "util.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define TOK_CHAT_MAX_PADS (1u << 28) /* refuse prompts past this many ids */

static const char *const tok_vision_tokens[] = {"<|vision_start|>", "<|vision_end|>",
                                                "<|image_pad|>", "<|video_pad|>"};

/* Check the parts and render the compact prompt (one pad per run) into b; the pad
 * runs, without positions, into runs (n_runs of them; caller frees). */
static int tok_chat_render(const Tok *t, const TokChat *chat, Buf *b, TokPads **runs,
                           size_t *n_runs, char *err)
{
    for (size_t i = 0; i < 4; i++)
        if (tok_find(t, tok_vision_tokens[i], strlen(tok_vision_tokens[i])) < 0 ||
            tok_find(t, "<|im_start|>", 12) < 0 || tok_find(t, "<|im_end|>", 10) < 0)
            return err_set(err, VLQ_ENOTSUP, "tokenizer: no %s token: not a Qwen3-VL vocabulary",
                           tok_vision_tokens[i]);
    int32_t image_pad = tok_find(t, "<|image_pad|>", 13);
    int32_t video_pad = tok_find(t, "<|video_pad|>", 13);
    size_t cap = 0, total = 0;
    *runs = NULL;
    *n_runs = 0;
    for (size_t i = 0; chat->system && i < 4; i++)
        if (strstr(chat->system, tok_vision_tokens[i]))
            return err_set(err, VLQ_EINPUT, "chat system text contains %s, which would be read "
                           "as media", tok_vision_tokens[i]);
    if (chat->system)
        buf_printf(b, "<|im_start|>system\n%s<|im_end|>\n", chat->system);
    buf_puts(b, "<|im_start|>user\n");
    for (size_t p = 0; p < chat->n_parts; p++) {
        const TokPart *part = &chat->parts[p];
        if (part->kind == TOK_PART_TEXT) {
            if (!part->text)
                return err_set(err, VLQ_EINPUT, "chat part %zu: text is NULL", p);
            for (size_t i = 0; i < 4; i++)
                if (strstr(part->text, tok_vision_tokens[i]))
                    return err_set(err, VLQ_EINPUT,
                                   "chat part %zu: text contains %s, which would be read as media",
                                   p, tok_vision_tokens[i]);
            buf_puts(b, part->text);
            continue;
        }
        if (part->kind != TOK_PART_IMAGE && part->kind != TOK_PART_VIDEO)
            return err_set(err, VLQ_EINPUT, "chat part %zu: unknown kind %d", p, (int)part->kind);
        int video = part->kind == TOK_PART_VIDEO;
        if (part->grid_t < 1 || part->grid_h < 2 || part->grid_w < 2 || part->grid_h % 2 ||
            part->grid_w % 2 || part->grid_t > 65536 || part->grid_h > 65536 ||
            part->grid_w > 65536)
            return err_set(err, VLQ_EINPUT, "chat part %zu: bad grid %dx%dx%d (t >= 1, h and w "
                           "even, >= 2)", p, part->grid_t, part->grid_h, part->grid_w);
        if (video && !part->times_s)
            return err_set(err, VLQ_EINPUT, "chat part %zu: video without timestamps", p);
        size_t per_group = (size_t)part->grid_h * (size_t)part->grid_w / 4;
        size_t groups = video ? (size_t)part->grid_t : 1;
        size_t n_tok = video ? per_group : per_group * (size_t)part->grid_t;
        if (n_tok * groups > TOK_CHAT_MAX_PADS || total + n_tok * groups > TOK_CHAT_MAX_PADS)
            return err_set(err, VLQ_ENOMEM, "chat part %zu: over %u pad tokens", p,
                           TOK_CHAT_MAX_PADS);
        total += n_tok * groups;
        for (size_t g = 0; g < groups; g++) {
            if (video) {
                double ts = part->times_s[g];
                if (!isfinite(ts) || ts < 0 || ts > 1e9)
                    return err_set(err, VLQ_EINPUT, "chat part %zu: timestamp %zu is %g", p, g,
                                   ts);
                buf_printf(b, "<%.1f seconds>", ts); /* Python's f"{ts:.1f}" rounds the same */
            }
            buf_puts(b, video ? "<|vision_start|><|video_pad|><|vision_end|>"
                              : "<|vision_start|><|image_pad|><|vision_end|>");
            if (*n_runs == cap) {
                cap = cap ? cap * 2 : 8;
                *runs = xrealloc(*runs, cap * sizeof **runs);
            }
            (*runs)[(*n_runs)++] = (TokPads){.part = p, .group = (int)g,
                                             .id = video ? video_pad : image_pad, .n_tok = n_tok};
        }
    }
    buf_puts(b, "<|im_end|>\n<|im_start|>assistant\n");
    return 0;
}

/* Render and encode the compact prompt: ids with one pad per run. */
static int tok_chat_compact(const Tok *t, const TokChat *chat, TokIds *ids, TokPads **runs,
                            size_t *n_runs, char *err)
{
    Buf b = {0};
    int rc = tok_chat_render(t, chat, &b, runs, n_runs, err);
    if (!rc)
        rc = tok_encode(t, b.data, b.len, ids, err);
    buf_clear(&b);
    if (rc) {
        free(*runs);
        *runs = NULL;
        *n_runs = 0;
    }
    return rc;
}

/* Encode the compact prompt, then widen each pad into its run; records where
 * each run lies. out is the caller's (tok_prompt_clear). */
int tok_chat_encode(const Tok *t, const TokChat *chat, TokPrompt *out, char *err)
{
    *out = (TokPrompt){0};
    TokIds compact = {0};
    TokPads *runs;
    size_t n_runs;
    int rc = tok_chat_compact(t, chat, &compact, &runs, &n_runs, err);
    if (rc)
        return rc;
    size_t r = 0;
    for (size_t i = 0; i < compact.n; i++) {
        int32_t id = compact.ids[i];
        int is_pad = r < n_runs && id == runs[r].id;
        size_t n = is_pad ? runs[r].n_tok : 1;
        if (out->ids.n + n > out->ids.cap) {
            size_t c = out->ids.cap ? out->ids.cap : 256;
            while (c < out->ids.n + n)
                c *= 2;
            out->ids.ids = xrealloc(out->ids.ids, c * sizeof(int32_t));
            out->ids.cap = c;
        }
        if (is_pad)
            runs[r++].start = out->ids.n;
        for (size_t k = 0; k < n; k++)
            out->ids.ids[out->ids.n++] = id;
    }
    /* Text cannot hold the vision tokens, so every run's pad is found, in order. */
    VLQ_ASSERT(r == n_runs);
    tok_ids_clear(&compact);
    out->pads = runs;
    out->n_pads = n_runs;
    return 0;
}

/* The compact prompt's ids plus the pads each run adds. */
int tok_chat_count(const Tok *t, const TokChat *chat, size_t *n_tok, char *err)
{
    TokIds compact = {0};
    TokPads *runs;
    size_t n_runs;
    int rc = tok_chat_compact(t, chat, &compact, &runs, &n_runs, err);
    if (rc)
        return rc;
    size_t n = compact.n;
    for (size_t r = 0; r < n_runs; r++)
        n += runs[r].n_tok - 1;
    *n_tok = n;
    free(runs);
    tok_ids_clear(&compact);
    return 0;
}

/* Free a prompt's ids and runs; NULL-safe. */
void tok_prompt_clear(TokPrompt *p)
{
    if (!p)
        return;
    tok_ids_clear(&p->ids);
    free(p->pads);
    *p = (TokPrompt){0};
}
