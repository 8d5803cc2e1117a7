/* test_forward: the model against the reference (transformers 4.57.1).
 *
 * positions_*: decoder_rope_index against Qwen3VLModel.get_rope_index on hand-made
 * prompts (expected values printed by the reference; merge size 2, ids 290..293 for
 * image_pad, video_pad, vision_start, vision_end). */
#include "decoder.h"
#include "err.h"
#include "test.h"

#include <stdlib.h>
#include <string.h>

enum { F_IMG = 290, F_VID = 291, F_VS = 292, F_VE = 293 };

static const ModelConfig *forward_pos_config(void)
{
    static ModelConfig c;
    c.v_spatial_merge_size = 2;
    c.image_token_id = F_IMG;
    c.video_token_id = F_VID;
    c.vision_start_token_id = F_VS;
    c.vision_end_token_id = F_VE;
    return &c;
}

static void forward_check_pos(const int32_t *ids, int n, const int32_t *ig, int n_img,
                              const int32_t *vg, int n_vid, const int32_t *want, int want_delta)
{
    int32_t *pos = calloc((size_t)n * 3, sizeof *pos);
    int delta = 12345;
    char err[256] = "";
    CHECK_EQ(decoder_rope_index(forward_pos_config(), ids, n, ig, n_img, vg, n_vid, pos, &delta,
                                err), 0);
    CHECK_EQ(delta, want_delta);
    for (int i = 0; i < 3 * n; i++)
        if (pos[i] != want[i]) {
            test_fail(__FILE__, __LINE__, "axis %d token %d: %d != %d", i / n, i % n, pos[i],
                      want[i]);
            break;
        }
    free(pos);
}

static void test_positions_image_video(void)
{
    /* an image 4x6 patches, text, a video of 2 groups of 4x4 with timestamp text */
    int32_t ids[29] = {1, 2, F_VS, F_IMG, F_IMG, F_IMG, F_IMG, F_IMG, F_IMG, F_VE, 5, 6, 8,
                       F_VS, F_VID, F_VID, F_VID, F_VID, F_VE, 10, 11, F_VS, F_VID, F_VID,
                       F_VID, F_VID, F_VE, 12, 13};
    int32_t ig[3] = {1, 4, 6}, vg[3] = {2, 4, 4};
    int32_t want[3 * 29] = {
        0, 1, 2, 3, 3, 3, 3, 3, 3, 6, 7, 8, 9, 10, 11, 11, 11, 11, 13, 14, 15, 16, 17, 17, 17,
        17, 19, 20, 21,
        0, 1, 2, 3, 3, 3, 4, 4, 4, 6, 7, 8, 9, 10, 11, 11, 12, 12, 13, 14, 15, 16, 17, 17, 18,
        18, 19, 20, 21,
        0, 1, 2, 3, 4, 5, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 11, 12, 13, 14, 15, 16, 17, 18, 17,
        18, 19, 20, 21};
    forward_check_pos(ids, 29, ig, 1, vg, 1, want, -7);
}

static void test_positions_two_images(void)
{
    int32_t ids[12] = {7, F_VS, F_IMG, F_IMG, F_IMG, F_IMG, F_VE, F_VS, F_IMG, F_IMG, F_VE, 9};
    int32_t ig[6] = {1, 4, 4, 1, 2, 4};
    int32_t want[36] = {0, 1, 2, 2, 2, 2, 4, 5, 6, 6, 8, 9, 0, 1, 2, 2, 3, 3,
                        4, 5, 6, 6, 8, 9, 0, 1, 2, 3, 2, 3, 4, 5, 6, 7, 8, 9};
    forward_check_pos(ids, 12, ig, 2, NULL, 0, want, -2);
}

static void test_positions_text(void)
{
    int32_t ids[5] = {1, 2, 3, 4, 5};
    int32_t want[15] = {0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 0, 1, 2, 3, 4};
    forward_check_pos(ids, 5, NULL, 0, NULL, 0, want, 0);
}

static void test_positions_mismatch(void)
{
    int32_t ids[6] = {1, F_VS, F_IMG, F_IMG, F_VE, 2};
    int32_t ig[6] = {1, 2, 4, 1, 2, 2}, pos[18];
    int delta;
    char err[256] = "";
    /* two grids for one image block, and a grid larger than its pads */
    CHECK_EQ(decoder_rope_index(forward_pos_config(), ids, 6, ig, 2, NULL, 0, pos, &delta, err),
             VLQ_EINPUT);
    CHECK(strstr(err, "image") != NULL);
    int32_t big[3] = {1, 8, 8};
    CHECK_EQ(decoder_rope_index(forward_pos_config(), ids, 6, big, 1, NULL, 0, pos, &delta, err),
             VLQ_EINPUT);
}

TEST_GROUP(forward, {"positions_image_video", test_positions_image_video},
           {"positions_two_images", test_positions_two_images},
           {"positions_text", test_positions_text},
           {"positions_mismatch", test_positions_mismatch})
