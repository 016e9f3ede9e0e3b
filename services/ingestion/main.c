/* cdp-ingestion: validates events, drops duplicates, appends them to the
 * durable event log before acknowledging, and runs the pipeline consumer
 * that feeds identity and profile. All wiring is in ing_service.c. */
#include "ing_service.h"

int main(int argc, char **argv)
{
    return cdp_service_main(&ing_service_def, argc, argv);
}
