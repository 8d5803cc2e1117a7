/* decoder_pos: Qwen3VLModel.get_rope_index (transformers 4.57.1 modeling_qwen3_vl.py):
 * the 3-D MRoPE positions of a prompt and its rope_delta. Part of the
 * decoder module (decoder.h), in its own file because it needs no weights: the engine
 * and tests call it without a model. */
#include "decoder.h"
#include "err.h"

/* Index of the first token == id at or after from, or n. */
static int decoder_find(const int32_t *ids, int n, int from, int32_t id)
{
    while (from < n && ids[from] != id)
        from++;
    return from;
}

static void decoder_text_pos(int32_t *pos, int n, int at, int len, int st)
{
    for (int i = 0; i < len; i++)
        for (int a = 0; a < 3; a++)
            pos[a * n + at + i] = st + i;
}

int decoder_rope_index(const ModelConfig *c, const int32_t *ids, int n, const int32_t *image_grid,
                       int n_img, const int32_t *video_grid, int n_vid, int32_t *pos,
                       int *rope_delta, char *err)
{
    int merge = c->v_spatial_merge_size > 0 ? c->v_spatial_merge_size : 2;
    int image_nums = 0, video_nums = 0, video_groups = 0;
    for (int i = 0; i + 1 < n; i++)
        if (ids[i] == c->vision_start_token_id) {
            image_nums += ids[i + 1] == c->image_token_id;
            video_nums += ids[i + 1] == c->video_token_id;
        }
    for (int v = 0; v < n_vid; v++)
        video_groups += video_grid[v * 3];
    if (image_nums != n_img || video_nums != video_groups)
        return err_set(err, VLQ_EINPUT, "positions: %d image and %d video blocks in the prompt "
                       "for %d images and %d video frame groups", image_nums, video_nums, n_img,
                       video_groups);
    int st = 0, next = 0, img = 0, vid = 0, vid_t = 0;
    for (int item = 0; item < image_nums + video_nums; item++) {
        int ed_img = img < n_img ? decoder_find(ids, n, st, c->image_token_id) : n + 1;
        int ed_vid = vid < n_vid ? decoder_find(ids, n, st, c->video_token_id) : n + 1;
        const int32_t *g;
        int ed;
        if (ed_img < ed_vid) {
            g = image_grid + 3 * img++;
            ed = ed_img;
        } else {
            g = video_grid + 3 * vid; /* one (1, h, w) group of video vid */
            if (++vid_t == video_grid[3 * vid]) {
                vid++;
                vid_t = 0;
            }
            ed = ed_vid;
        }
        int gh = g[1] / merge, gw = g[2] / merge;
        if (ed >= n || ed + gh * gw > n)
            return err_set(err, VLQ_EINPUT, "positions: visual item %d runs past the prompt "
                           "(%d tokens)", item, n);
        int text_len = ed - st;
        decoder_text_pos(pos, n, st, text_len, next);
        int s0 = next + text_len, mx = s0;
        for (int i = 0; i < gh; i++)
            for (int j = 0; j < gw; j++) {
                int r = ed + i * gw + j;
                pos[r] = s0;
                pos[n + r] = s0 + i;
                pos[2 * n + r] = s0 + j;
                mx = s0 + (i > j ? i : j) > mx ? s0 + (i > j ? i : j) : mx;
            }
        next = mx + 1;
        st = ed + gh * gw;
    }
    if (st < n) {
        decoder_text_pos(pos, n, st, n - st, next);
        next += n - st;
    }
    *rope_delta = next - n;
    return 0;
}
