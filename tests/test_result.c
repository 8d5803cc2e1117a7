/* Tests of jobs/result.c: the stored ocr and summarize documents built from units, their
 * txt/md/json renderings (page order, separators, failed pages, hh:mm:ss), and the
 * grouping of summaries into reduce rounds. */
#include "err.h"
#include "result.h"
#include "test.h"

#include <jansson.h>
#include <stdlib.h>

static void test_ocr_doc_render(void)
{
    JobUnit u[3] = {
        {.idx = 0, .result = "First page.", .meta_json = "{\"page\": 1}", .tok_in = 90,
         .tok_out = 4, .seconds = 0.5},
        {.idx = 1, .error_code = "EINPUT", .error = "scan.pdf: page 2: bad data",
         .meta_json = "{\"page\": 2}"},
        {.idx = 2, .result = "Third\n", .meta_json = "{\"page\": 3}", .tok_out = 2},
    };
    int failed = -1;
    char *doc = result_ocr_doc("/in/scan.pdf", 1, u, 3, &failed);
    CHECK_EQ(failed, 1);
    json_t *j = json_loads(doc, 0, NULL);
    CHECK(j != NULL);
    json_t *pages = json_object_get(j, "pages");
    CHECK_EQ(json_array_size(pages), 3);
    CHECK_EQ(json_integer_value(json_object_get(json_array_get(pages, 1), "page")), 2);
    CHECK(json_is_null(json_object_get(json_array_get(pages, 1), "text")));
    CHECK_STR(json_string_value(json_object_get(
                  json_object_get(json_array_get(pages, 1), "error"), "code")), "EINPUT");
    CHECK_EQ(json_integer_value(json_object_get(json_array_get(pages, 0), "tok_in")), 90);
    CHECK_EQ(json_integer_value(json_object_get(j, "pages_failed")), 1);
    json_decref(j);
    char err[VLQ_ERRLEN];
    Buf b = {0};
    CHECK_EQ(result_render("ocr", "json", doc, strlen(doc), "txt", &b, err), 0);
    CHECK_STR(b.data, "--- page 1 ---\nFirst page.\n\n--- page 2 ---\n"
                      "[page 2 failed: EINPUT: scan.pdf: page 2: bad data]\n\n"
                      "--- page 3 ---\nThird\n");
    buf_clear(&b);
    CHECK_EQ(result_render("ocr", "json", doc, strlen(doc), "md", &b, err), 0);
    CHECK_STR(b.data, "<!-- page 1 -->\n\nFirst page.\n\n---\n\n<!-- page 2 -->\n\n"
                      "> [page 2 failed: EINPUT: scan.pdf: page 2: bad data]\n\n---\n\n"
                      "<!-- page 3 -->\n\nThird\n");
    buf_clear(&b);
    CHECK_EQ(result_render("ocr", "json", doc, strlen(doc), "json", &b, err), 0);
    CHECK(b.len == strlen(doc) + 1 && !strncmp(b.data, doc, strlen(doc)));
    buf_clear(&b);
    CHECK_EQ(result_render("ocr", "json", doc, strlen(doc), "pdf", &b, err), VLQ_EINPUT);
    CHECK_EQ(result_render("test.echo", "text", "x", 1, "md", &b, err), VLQ_ENOTSUP);
    CHECK_EQ(result_render("ocr", "json", "[1]", 3, "md", &b, err), VLQ_EINPUT);
    buf_clear(&b);
    free(doc);
    CHECK_STR(result_extension("markdown"), "md");
    CHECK_STR(result_extension("text"), "txt");
    CHECK_STR(result_extension("json"), "json");
}

static void test_summary_doc_render(void)
{
    JobUnit u[3] = {
        {.idx = 0, .result = "A red square.",
         .meta_json = "{\"start_s\": 0, \"end_s\": 61.5, \"frames\": 124}"},
        {.idx = 1, .result = "A blue circle.",
         .meta_json = "{\"start_s\": 61.5, \"end_s\": 3725, \"frames\": 40}"},
        {.idx = 2, .error_code = "EINPUT", .error = "bad frames",
         .meta_json = "{\"start_s\": 3725, \"end_s\": 3800, \"frames\": 10}"},
    };
    char *doc = result_summary_doc("/v/talk.mp4", 1, 3725, 2, u, 3, "Shapes.");
    json_t *j = json_loads(doc, 0, NULL);
    CHECK(j && json_number_value(json_object_get(j, "duration_s")) == 3725);
    CHECK(json_number_value(json_object_get(j, "fps")) == 2);
    json_t *s1 = json_array_get(json_object_get(j, "segments"), 1);
    CHECK(json_number_value(json_object_get(s1, "start_s")) == 61.5);
    CHECK(json_is_null(json_object_get(s1, "error")));
    CHECK(json_is_object(json_object_get(json_array_get(json_object_get(j, "segments"), 2),
                                         "error")));
    CHECK_EQ(json_integer_value(json_object_get(s1, "frames")), 40);
    CHECK_STR(json_string_value(json_object_get(j, "summary")), "Shapes.");
    json_decref(j);
    char err[VLQ_ERRLEN];
    Buf b = {0};
    CHECK_EQ(result_render("summarize", "json", doc, strlen(doc), "md", &b, err), 0);
    CHECK(b.data && strstr(b.data, "# Summary of talk.mp4\n\nDuration 01:02:05, 3 segment(s).\n\n"
                                   "Shapes.\n"));
    CHECK(b.data && strstr(b.data, "(10 frames)\n\n[segment failed: EINPUT: bad frames]\n"));
    CHECK(b.data && strstr(b.data, "### 00:01:01 - 01:02:05 (40 frames)\n\nA blue circle.\n"));
    buf_clear(&b);
    CHECK_EQ(result_render("summarize", "json", doc, strlen(doc), "txt", &b, err), 0);
    CHECK(b.data && strstr(b.data, "[00:00:00 - 00:01:01]\nA red square.\n"));
    buf_clear(&b);
    free(doc);
}

static void test_reduce_groups(void)
{
    char err[VLQ_ERRLEN];
    int g[8];
    int64_t tok[8] = {30, 30, 30, 30, 30, 30, 30, 30};
    CHECK_EQ(result_reduce_groups(tok, 8, 10, 1000, g, err), 1);
    CHECK(g[0] == 0 && g[7] == 0);
    /* 10 + 3*30 = 100 fits, a fourth does not: groups of 3, 3, 2 */
    CHECK_EQ(result_reduce_groups(tok, 8, 10, 100, g, err), 3);
    CHECK(g[0] == 0 && g[2] == 0 && g[3] == 1 && g[5] == 1 && g[6] == 2 && g[7] == 2);
    /* rounds shrink: every group but the last has two items or more */
    CHECK_EQ(result_reduce_groups(tok, 8, 10, 70, g, err), 4);
    CHECK_EQ(result_reduce_groups(tok, 8, 10, 69, g, err), VLQ_EINPUT);
    CHECK(strstr(err, "do not fit one reduce budget of 69 tokens") != NULL);
    CHECK_EQ(result_reduce_groups(tok, 1, 10, 39, g, err), VLQ_EINPUT);
    CHECK_EQ(result_reduce_groups(tok, 1, 10, 40, g, err), 1);
    CHECK_EQ(result_reduce_groups(tok, 0, 10, 40, g, err), 0);
}

/* An input whose name is not UTF-8, a unit without an error message, no summary: the
 * documents still build (json_pack used to fail on such bytes and result_dump abort),
 * with the bytes escaped and the unset values null. */
static void test_doc_odd_values(void)
{
    JobUnit u[2] = {
        {.idx = 0, .result = "ok", .meta_json = "{\"page\": 1}"},
        {.idx = 1, .error_code = "EINPUT", .meta_json = "{\"page\": 2}"},
    };
    int failed = -1;
    char *doc = result_ocr_doc("/in/scan\xff\xfe.pdf", 0, u, 2, &failed);
    json_t *j = json_loads(doc, 0, NULL);
    CHECK(j != NULL);
    CHECK_STR(json_string_value(json_object_get(j, "input")), "/in/scan\\xff\\xfe.pdf");
    json_t *e = json_object_get(json_array_get(json_object_get(j, "pages"), 1), "error");
    CHECK(json_is_null(json_object_get(e, "message")));
    json_decref(j);
    free(doc);
    JobUnit s[1] = {{.idx = 0, .error_code = "EMODEL", .result = "partial",
                     .meta_json = "{\"start_s\": 0, \"end_s\": 2, \"frames\": 4}"}};
    doc = result_summary_doc("/in/v\x80.mp4", 1, 2.0, 2.0, s, 1, NULL);
    j = json_loads(doc, 0, NULL);
    CHECK(j != NULL);
    CHECK(json_is_null(json_object_get(j, "summary")));
    CHECK(json_is_null(json_object_get(json_array_get(json_object_get(j, "segments"), 0),
                                       "summary")));
    json_decref(j);
    free(doc);
}

TEST_GROUP(result, {"ocr_doc_render", test_ocr_doc_render}, {"doc_odd_values", test_doc_odd_values},
           {"summary_doc_render", test_summary_doc_render}, {"reduce_groups", test_reduce_groups})
