/* bench_seg_eval: how fast segment rules evaluate (seg_rule_eval), on one
 * core, against a baseline taken in the same run.
 *
 * Builds 10,000 varied profiles (15 traits of every JSON type, 10 count
 * names with daily buckets over the last year, daily revenue, channels) and
 * 100 varied rules (trait comparisons, in-lists, contains, starts_with,
 * count/sum windows, within/before, absolute times, and/or/not), then
 * evaluates every rule against profile after profile, asking for the next
 * change as the segmentation service does, for --seconds (default 6). The
 * baseline evaluates the rule `true` the same number of times. Prints one
 * JSON line; the ratio figure / baseline is what compares across machines.
 *
 * Deterministic: a fixed-seed generator and a fixed "now". */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "seg_rule.h"

#define N_PROFILES 10000
#define N_RULES 100
#define DAY_MS INT64_C(86400000)
#define NOW_MS INT64_C(1772366400000)   /* 2026-03-01T12:00:00Z */
#define CLOCK_EVERY 64                  /* profiles between clock reads */

static volatile int64_t next_sink;
static uint64_t rng_state = 0x9e3779b97f4a7c15u;

static uint32_t rnd(uint32_t n)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state % n);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static const char *const events[] = {
    "Order Completed", "Page Viewed", "Product Viewed", "Cart Abandoned", "Email Opened",
    "Email Clicked", "Signed In", "Search", "Coupon Applied", "Review Written",
};
static const char *const plans[] = {"free", "pro", "team", "enterprise"};
static const char *const countries[] = {"US", "DE", "FR", "GB", "JP", "BR", "IN", "ES"};
static const char *const tags[] = {"vip", "beta", "churn-risk", "newsletter", "b2b", "mobile"};
static const char *const channels[] = {"email", "sms", "push", "web"};
#define PICK(a) (a)[rnd(sizeof(a) / sizeof((a)[0]))]

/* ---------------------------------------------------------------- profiles */

static void build_profile(seg_profile *p, int id)
{
    char json[256];
    int n;
#define TRAIT(name, ...)                                                    \
    do {                                                                    \
        n = snprintf(json, sizeof json, __VA_ARGS__);                       \
        seg_profile_set_trait_json(p, name, json, (size_t)n);               \
    } while (0)
    TRAIT("plan", "\"%s\"", PICK(plans));
    TRAIT("country", "\"%s\"", PICK(countries));
    TRAIT("age", "%u", 18 + rnd(60));
    TRAIT("score", "%.2f", rnd(10000) / 100.0);
    TRAIT("email", "\"user%d@%s\"", id, rnd(3) ? "example.com" : "corp.example.org");
    TRAIT("tags", "[\"%s\",\"%s\"]", PICK(tags), PICK(tags));
    TRAIT("vip", "%s", rnd(5) ? "false" : "true");
    TRAIT("signup_source", "\"%s\"", rnd(2) ? "ads" : "organic");
    TRAIT("language", "\"%s\"", rnd(2) ? "en" : "de");
    TRAIT("city", "\"City %u\"", rnd(100));
    TRAIT("ltv", "%u", rnd(5000));
    TRAIT("company_size", "%u", rnd(1000));
    TRAIT("newsletter", "%s", rnd(2) ? "true" : "false");
    TRAIT("address", "{\"zip\":\"%05u\"}", rnd(99999));
    if (rnd(4))
        TRAIT("nickname", "%s", rnd(3) ? "\"nick\"" : "null");
#undef TRAIT
    int64_t today = NOW_MS / DAY_MS;
    int64_t total = 0;
    for (size_t e = 0; e < sizeof events / sizeof events[0]; e++) {
        int64_t all = 0;
        int days = (int)rnd(40);
        int64_t day = today - 365;
        for (int d = 0; d < days; d++) {
            day += 1 + rnd(18);
            if (day > today)
                break;
            int64_t c = 1 + rnd(5);
            seg_profile_add_day_count(p, events[e], day, c);
            all += c;
        }
        seg_profile_set_count(p, events[e], all + rnd(20));
        total += all;
    }
    double revenue = 0;
    for (int64_t day = today - 365; day <= today; day += 1 + rnd(20)) {
        double v = rnd(20000) / 100.0;
        seg_profile_add_day_revenue(p, day, v);
        revenue += v;
    }
    seg_profile_set_revenue(p, revenue);
    seg_profile_set_total_events(p, total);
    int64_t first = NOW_MS - (int64_t)rnd(700) * DAY_MS - rnd(86400) * INT64_C(1000);
    int64_t last = NOW_MS - (int64_t)rnd(60) * DAY_MS - rnd(86400) * INT64_C(1000);
    seg_profile_set_seen(p, first, last < first ? first : last);
    for (size_t c = 0; c < sizeof channels / sizeof channels[0]; c++)
        if (rnd(2))
            seg_profile_set_channel(p, channels[c], NOW_MS - (int64_t)rnd(90) * DAY_MS);
}

/* ------------------------------------------------------------------- rules */

/* Appends one random condition to buf. */
static void condition(char *buf, size_t cap)
{
    size_t len = strlen(buf);
    char *o = buf + len;
    size_t room = cap - len;
    switch (rnd(14)) {
    case 0: snprintf(o, room, "trait.plan = \"%s\"", PICK(plans)); break;
    case 1: snprintf(o, room, "trait.country in [\"%s\", \"%s\", \"%s\"]", PICK(countries), PICK(countries), PICK(countries)); break;
    case 2: snprintf(o, room, "trait.age >= %u", 18 + rnd(50)); break;
    case 3: snprintf(o, room, "trait.tags contains \"%s\"", PICK(tags)); break;
    case 4: snprintf(o, room, "trait.email starts_with \"user%u\"", rnd(10)); break;
    case 5: snprintf(o, room, "trait.vip = true"); break;
    case 6: snprintf(o, room, "count(\"%s\", %ud) >= %u", PICK(events), 1 + rnd(90), 1 + rnd(5)); break;
    case 7: snprintf(o, room, "sum(revenue, %uw) > %u", 1 + rnd(12), rnd(500)); break;
    case 8: snprintf(o, room, "last_seen within %ud", 1 + rnd(30)); break;
    case 9: snprintf(o, room, "last_interaction(\"%s\") before %uh", PICK(channels), 1 + rnd(500)); break;
    case 10: snprintf(o, room, "count(\"%s\") > %u", PICK(events), rnd(30)); break;
    case 11: snprintf(o, room, "first_seen < \"2025-%02u-01\"", 1 + rnd(12)); break;
    case 12: snprintf(o, room, "trait.score < %u.5 and trait.ltv > %u", rnd(100), rnd(3000)); break;
    default: snprintf(o, room, "trait(\"nickname\") != null"); break;
    }
}

static void rule_text(char *buf, size_t cap)
{
    buf[0] = '\0';
    int n = 1 + (int)rnd(4);
    for (int i = 0; i < n; i++) {
        if (i)
            strncat(buf, rnd(3) ? " and " : " or ", cap - strlen(buf) - 1);
        int neg = rnd(6) == 0, group = rnd(5) == 0;
        if (neg)
            strncat(buf, "not ", cap - strlen(buf) - 1);
        if (group || neg)
            strncat(buf, "(", cap - strlen(buf) - 1);
        condition(buf, cap);
        if (group) {
            strncat(buf, " or ", cap - strlen(buf) - 1);
            condition(buf, cap);
        }
        if (group || neg)
            strncat(buf, ")", cap - strlen(buf) - 1);
    }
}

/* ------------------------------------------------------------------- timing */

/* Evaluates rules round-robin over the profiles, `evals` times or until
 * `seconds` pass (evals == 0). Returns the evaluations done; *elapsed,
 * *members get the time taken and how many were members. */
static uint64_t run(seg_rule *const *rules, int nrules, seg_profile *const *profiles,
                    double seconds, uint64_t evals, int want_next, double *elapsed,
                    uint64_t *members)
{
    uint64_t done = 0, in = 0;
    int64_t next_min = INT64_MAX;
    double t0 = now_s(), t = t0;
    for (int pi = 0;; pi = (pi + 1) % N_PROFILES) {
        const seg_profile *p = profiles[pi];
        for (int r = 0; r < nrules && (evals == 0 || done < evals); r++, done++) {
            int64_t next;
            in += (uint64_t)seg_rule_eval(rules[r], p, NOW_MS, want_next ? &next : NULL);
            if (want_next && next < next_min)
                next_min = next;
        }
        if (evals && done >= evals)
            break;
        if (pi % CLOCK_EVERY == 0 && (t = now_s()) - t0 >= seconds && evals == 0)
            break;
    }
    *elapsed = now_s() - t0;
    *members = in;
    next_sink = next_min;   /* the next-change values are used, so computed */
    return done;
}

int main(int argc, char **argv)
{
    double seconds = 6;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--seconds") == 0 && i + 1 < argc) {
            seconds = atof(argv[++i]);
        } else {
            fprintf(stderr, "usage: %s [--seconds N]\n", argv[0]);
            return 2;
        }
    }
    if (seconds <= 0 || seconds > 600) {
        fprintf(stderr, "--seconds must be in (0, 600]\n");
        return 2;
    }

    static seg_profile *profiles[N_PROFILES];
    for (int i = 0; i < N_PROFILES; i++) {
        if (!(profiles[i] = seg_profile_new()))
            return 1;
        build_profile(profiles[i], i);
    }
    seg_rule *rules[N_RULES];
    int timed = 0;
    for (int i = 0; i < N_RULES; i++) {
        char text[2048];
        seg_rule_error err;
        rule_text(text, sizeof text);
        if (!(rules[i] = seg_rule_parse(text, &err))) {
            fprintf(stderr, "bench rule does not parse: %s: %s\n", text, err.message);
            return 1;
        }
        timed += seg_rule_time_based(rules[i]);
    }
    seg_rule_error err;
    seg_rule *truth = seg_rule_parse("true", &err);
    if (!truth)
        return 1;

    double el, el_plain, el_base;
    uint64_t members, members_plain, members_base;
    uint64_t evals = run(rules, N_RULES, profiles, seconds * 0.75, 0, 1, &el, &members);
    uint64_t plain = run(rules, N_RULES, profiles, seconds * 0.25, 0, 0, &el_plain, &members_plain);
    seg_rule *truths[N_RULES];
    for (int i = 0; i < N_RULES; i++)
        truths[i] = truth;
    run(truths, N_RULES, profiles, 0, evals, 1, &el_base, &members_base);

    double eps = evals / el, base = evals / el_base;
    printf("{\"bench\":\"seg_eval\",\"segments\":%d,\"profiles\":%d,\"time_based_segments\":%d,"
           "\"evals\":%" PRIu64 ",\"evals_per_s\":%.0f,\"evals_per_s_without_next\":%.0f,"
           "\"baseline_per_s\":%.0f,\"ratio\":%.4f,\"member_share\":%.3f}\n",
           N_RULES, N_PROFILES, timed, evals, eps, plain / el_plain, base, eps / base,
           (double)members / (double)evals);

    seg_rule_free(truth);
    for (int i = 0; i < N_RULES; i++)
        seg_rule_free(rules[i]);
    for (int i = 0; i < N_PROFILES; i++)
        seg_profile_free(profiles[i]);
    return members_base == evals ? 0 : 1;
}
