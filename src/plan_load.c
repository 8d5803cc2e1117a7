/* plan_load: decode one planned unit into the vision encoder's input (plan.h).
 *
 * The one place where media's frames meet prep's grid: each frame, borrowed from the
 * media callback, is resized at once with a PrepResizer built for its size and
 * scattered into the PrepVisual, so memory is one source frame plus the output. The
 * group timestamps are computed from the reference's frame indices (start + i/fps,
 * averaged per pair), the values the planner counted and the prompt will print. */
#include "err.h"
#include "log.h"
#include "plan.h"
#include "util.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
    const PlanUnit *u;
    PrepVisual *v;
    PrepResizer *rs;
    int rs_w, rs_h;      /* the source size rs was built for */
    uint8_t *tmp;        /* one resized frame */
    int64_t *idx;        /* reference frame index of each frame added */
    const char *path;
} PlanLoad;

static int plan_load_frame(void *ctx, const MediaFrame *f, char *err)
{
    PlanLoad *l = ctx;
    if (l->v->n_frames >= l->u->frames)
        return 0; /* more frames than planned (cannot happen with the same options) */
    if (!l->rs || l->rs_w != f->width || l->rs_h != f->height) {
        prep_resizer_free(l->rs);
        l->rs = prep_resizer_new(f->width, f->height, l->u->width, l->u->height);
        l->rs_w = f->width;
        l->rs_h = f->height;
    }
    prep_resize(l->rs, f->rgb, f->stride, l->tmp);
    l->idx[l->v->n_frames] = f->frame_idx;
    prep_visual_add(l->v, l->tmp, l->u->width * 3);
    return 0;
}

/* plan_load: see plan.h. */
int plan_load(const char *path, const PlanOptions *o, const PlanUnit *u, PrepVisual *v,
              double *times_s, char *err)
{
    int ret = prep_visual_init(v, u->frames, u->width, u->height, err);
    if (ret) {
        err_prefix(err, "%s", path);
        return ret;
    }
    PlanLoad l = {.u = u, .v = v, .path = path};
    l.tmp = malloc((size_t)u->width * u->height * 3);
    l.idx = calloc((size_t)u->frames, sizeof *l.idx);
    MediaOptions m = o->media;
    MediaInfo info = {0};
    if (!l.tmp || !l.idx) {
        ret = err_set(err, VLQ_ENOMEM, "%s: out of memory for %d frames", path, u->frames);
        goto out;
    }
    if (u->page) {
        m.first_page = m.last_page = u->page;
        ret = media_decode_pages(path, &m, plan_load_frame, &l, err);
    } else {
        ret = media_probe(path, &m, &info, err);
        m.from_s = u->start_s;
        m.to_s = u->end_s >= info.duration_s ? 0 : u->end_s;
        int lost = 0;
        if (!ret)
            ret = media_decode_video(path, &m, plan_load_frame, &l, &lost, err);
    }
    if (ret)
        goto out;
    if (v->n_frames == 0) {
        ret = err_set(err, VLQ_EINPUT, "%s: no frame decoded for the planned unit", path);
        goto out;
    }
    int got = v->n_frames;
    if (got < u->frames) {
        log_warn("%s: %d of %d planned frames decoded", path, got, u->frames);
        v->grid_t = (got + PREP_TEMPORAL - 1) / PREP_TEMPORAL;
    }
    prep_visual_finish(v);
    for (int g = 0; times_s && g < u->grid_t; g++) {
        if (u->page || g >= v->grid_t) {
            times_s[g] = 0;
            continue;
        }
        int64_t a = l.idx[2 * g], b = l.idx[2 * g + 1 < got ? 2 * g + 1 : got - 1];
        times_s[g] = u->start_s + (a / info.video_fps + b / info.video_fps) / 2;
    }
out:
    if (ret)
        prep_visual_clear(v);
    prep_resizer_free(l.rs);
    free(l.tmp);
    free(l.idx);
    return ret;
}
