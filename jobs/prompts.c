/* prompts: the default prompt texts (prompts.h). Append new versions; never edit one. */
#include "prompts.h"

#include <stddef.h>
#include <string.h>

typedef struct {
    const char *kind;
    int version;
    const char *text;
} PromptsEntry;

static const PromptsEntry prompts_table[] = {
    {"ocr", 1,
     "Transcribe all the text on this page in reading order, as Markdown. Keep headings, "
     "lists and paragraphs; write tables as Markdown tables and formulas as LaTeX. Do not "
     "describe images, do not summarise, and do not add any commentary: output only the "
     "page's text."},
    {"summarize", 1,
     "Summarize this video. Begin with a short overview of what it shows. Then list the "
     "main events in order, one per line, each starting with its time in seconds as "
     "marked in the video, like <12.5 seconds>. Mention on-screen text, speakers and "
     "scene changes when they matter. Do not invent details that are not visible."},
    {"summarize.reduce", 1,
     "Below are summaries of consecutive parts of one video, each with its time range. "
     "Combine them into one summary of the whole video: begin with a short overview, then "
     "list the main events in order, each with its time as hh:mm:ss. Keep what matters, "
     "merge repetitions, and do not invent anything the summaries do not say."},
};

/* prompts_get: a kind's prompt at a version, or NULL. Cannot fail. */
const char *prompts_get(const char *kind, int version)
{
    for (size_t i = 0; i < sizeof prompts_table / sizeof prompts_table[0]; i++)
        if (!strcmp(prompts_table[i].kind, kind) && prompts_table[i].version == version)
            return prompts_table[i].text;
    return NULL;
}

/* prompts_default: the kind's current prompt and its version, or NULL. Cannot fail. */
const char *prompts_default(const char *kind, int *version)
{
    int v = !strcmp(kind, "ocr")                ? PROMPTS_OCR_VERSION
            : !strcmp(kind, "summarize")        ? PROMPTS_SUMMARIZE_VERSION
            : !strcmp(kind, "summarize.reduce") ? PROMPTS_REDUCE_VERSION
                                                : 0;
    if (version)
        *version = v;
    return v ? prompts_get(kind, v) : NULL;
}
