/* bench_ingest: see bench_ingest.h. */
#include <stdio.h>
#include <string.h>

#include "bench_ingest.h"
#include "cdp/v1/ingestion.pb-c.h"
#include "cdp_service.h"

int bench_ingest_init(bench_ingest *in, const char *run, uint32_t people, uint32_t sample_every,
                      int batch) {
    memset(in, 0, sizeof(*in));
    bench_gen_init(&in->gen, run, people, sample_every);
    in->per_call = batch;
    return bench_batch_init(&in->batch, (size_t)batch);
}

void bench_ingest_free(bench_ingest *in) { bench_batch_free(&in->batch); }

static int ingest_make(void *ud, uint64_t seq, const ProtobufCMessage **req) {
    bench_ingest *in = ud;
    /* The driver builds calls in order, so call seq starts at event seq*batch. */
    in->gen.next_seq = seq * (uint64_t)in->per_call;
    bench_gen_fill(&in->gen, &in->batch, (size_t)in->per_call, cdp_now_ms());
    *req = &in->batch.req.base;
    return in->per_call;
}

static void ingest_note_reject(bench_ingest *in, const Cdp__V1__EventResult *er) {
    if (!in->first_reject[0])
        snprintf(in->first_reject, sizeof(in->first_reject), "%s: %s", er->field, er->error);
}

static int ingest_check(void *ud, uint64_t seq, const ProtobufCMessage *resp, uint64_t t_start_ns,
                        uint64_t t_end_ns) {
    bench_ingest *in = ud;
    const Cdp__V1__IngestResponse *r = (const Cdp__V1__IngestResponse *)resp;
    in->rejected += (uint64_t)r->rejected;
    in->duplicates += (uint64_t)r->duplicates;
    uint64_t base = seq * (uint64_t)in->per_call;
    for (size_t i = 0; i < r->n_results; i++) {
        const Cdp__V1__EventResult *er = r->results[i];
        if (er->status == CDP__V1__EVENT_STATUS__EVENT_STATUS_REJECTED)
            ingest_note_reject(in, er);
        else if (er->status == CDP__V1__EVENT_STATUS__EVENT_STATUS_ACCEPTED && in->on_accepted &&
                 er->index >= 0 && er->index < in->per_call)
            in->on_accepted(in->accepted_ud, base + (uint64_t)er->index, t_start_ns, t_end_ns);
    }
    return r->accepted;
}

void bench_ingest_workload(bench_ingest *in, bench_workload *w) {
    memset(w, 0, sizeof(*w));
    w->svc = &cdp__v1__ingestion__descriptor;
    w->method = "Ingest";
    w->make = ingest_make;
    w->check = ingest_check;
    w->ud = in;
}
