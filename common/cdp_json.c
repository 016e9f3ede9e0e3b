/* cdp_json: google.protobuf.Struct/Value <-> jansson.
 *
 * Clients send flexible payloads (event properties, traits) as Struct; cdp
 * stores and evaluates them as JSON. Both directions live here so that the
 * number rules are the same everywhere:
 *   - JSON integers and reals both become number_value (a double);
 *   - number_value becomes a JSON integer when it is integral and within
 *     +-2^53 (every such double is an exact integer), else a real;
 *   - NaN and infinities become null (JSON has no spelling for them).
 *
 * Messages built here are allocated part by part with malloc, exactly as
 * protobuf-c's default allocator does when unpacking, so
 * protobuf_c_message_free_unpacked(msg, NULL) frees them as well as
 * cdp_struct_free / cdp_value_free do. Strings are always copies, never
 * protobuf_c_empty_string, because free_unpacked frees every string. */
#include "cdp_json.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Largest magnitude below which every integer is exactly representable. */
#define CDP_JSON_MAX_EXACT_INT 9007199254740992.0 /* 2^53 */

/* ------------------------------------------------------------ depth */

static int value_depth(const Google__Protobuf__Value *v);

int cdp_struct_depth(const Google__Protobuf__Struct *s)
{
    if (!s)
        return 0;
    int deepest = 0;
    for (size_t i = 0; i < s->n_fields; i++) {
        const Google__Protobuf__Struct__FieldsEntry *e = s->fields[i];
        int d = e ? value_depth(e->value) : 0;
        if (d > deepest)
            deepest = d;
    }
    return 1 + deepest;
}

/* Levels a value adds below its container: 0 for scalars, the struct's
 * depth for a struct, one plus its deepest element for a list. */
static int value_depth(const Google__Protobuf__Value *v)
{
    if (!v)
        return 0;
    if (v->kind_case == GOOGLE__PROTOBUF__VALUE__KIND_STRUCT_VALUE)
        return cdp_struct_depth(v->struct_value);
    if (v->kind_case != GOOGLE__PROTOBUF__VALUE__KIND_LIST_VALUE || !v->list_value)
        return 0;
    int deepest = 0;
    const Google__Protobuf__ListValue *l = v->list_value;
    for (size_t i = 0; i < l->n_values; i++) {
        int d = value_depth(l->values[i]);
        if (d > deepest)
            deepest = d;
    }
    return 1 + deepest;
}

/* ------------------------------------------------------------ Struct -> JSON */

/* The JSON number for d under the rules in the file comment. */
static json_t *number_to_json(double d)
{
    if (!isfinite(d))
        return json_null();
    if (d == trunc(d) && fabs(d) <= CDP_JSON_MAX_EXACT_INT)
        return json_integer((json_int_t)d);
    return json_real(d);
}

static json_t *list_to_json(const Google__Protobuf__ListValue *l)
{
    json_t *arr = json_array();
    if (!arr || !l)
        return arr;
    for (size_t i = 0; i < l->n_values; i++) {
        json_t *item = cdp_value_to_json(l->values[i]);
        if (!item || json_array_append_new(arr, item) != 0) {
            json_decref(arr);
            return NULL;
        }
    }
    return arr;
}

/* New reference, or NULL when out of memory or when a string or key is not
 * valid UTF-8 (protobuf-c does not check; jansson refuses). A missing value
 * or one with no kind set is null. */
json_t *cdp_value_to_json(const Google__Protobuf__Value *v)
{
    if (!v)
        return json_null();
    switch (v->kind_case) {
    case GOOGLE__PROTOBUF__VALUE__KIND_NUMBER_VALUE:
        return number_to_json(v->number_value);
    case GOOGLE__PROTOBUF__VALUE__KIND_STRING_VALUE:
        return json_string(v->string_value ? v->string_value : "");
    case GOOGLE__PROTOBUF__VALUE__KIND_BOOL_VALUE:
        return json_boolean(v->bool_value);
    case GOOGLE__PROTOBUF__VALUE__KIND_STRUCT_VALUE:
        return cdp_struct_to_json(v->struct_value);
    case GOOGLE__PROTOBUF__VALUE__KIND_LIST_VALUE:
        return list_to_json(v->list_value);
    default:
        return json_null();
    }
}

/* New reference to an object; NULL under the same conditions as
 * cdp_value_to_json. A repeated key keeps its last value, as a protobuf map
 * does when parsing. */
json_t *cdp_struct_to_json(const Google__Protobuf__Struct *s)
{
    json_t *obj = json_object();
    if (!obj || !s)
        return obj;
    for (size_t i = 0; i < s->n_fields; i++) {
        const Google__Protobuf__Struct__FieldsEntry *e = s->fields[i];
        if (!e)
            continue;
        json_t *val = cdp_value_to_json(e->value);
        if (!val || json_object_set_new(obj, e->key ? e->key : "", val) != 0) {
            json_decref(obj);
            return NULL;
        }
    }
    return obj;
}

/* ------------------------------------------------------------ JSON -> Struct */

static Google__Protobuf__ListValue *json_to_list(const json_t *arr)
{
    Google__Protobuf__ListValue *l = malloc(sizeof *l);
    if (!l)
        return NULL;
    google__protobuf__list_value__init(l);
    size_t n = json_array_size(arr);
    if (n == 0)
        return l;
    l->values = malloc(n * sizeof *l->values);
    if (!l->values) {
        free(l);
        return NULL;
    }
    /* n_values counts only finished elements, so a partial list frees cleanly. */
    for (size_t i = 0; i < n; i++) {
        Google__Protobuf__Value *item = cdp_json_to_value(json_array_get(arr, i));
        if (!item) {
            protobuf_c_message_free_unpacked(&l->base, NULL);
            return NULL;
        }
        l->values[l->n_values++] = item;
    }
    return l;
}

/* Fills v from a scalar or container j. Returns 0, or -1 out of memory. */
static int value_fill(Google__Protobuf__Value *v, const json_t *j)
{
    switch (json_typeof(j)) {
    case JSON_OBJECT:
        v->struct_value = cdp_json_to_struct(j);
        v->kind_case = GOOGLE__PROTOBUF__VALUE__KIND_STRUCT_VALUE;
        return v->struct_value ? 0 : -1;
    case JSON_ARRAY:
        v->list_value = json_to_list(j);
        v->kind_case = GOOGLE__PROTOBUF__VALUE__KIND_LIST_VALUE;
        return v->list_value ? 0 : -1;
    case JSON_STRING:
        v->string_value = strdup(json_string_value(j));
        v->kind_case = GOOGLE__PROTOBUF__VALUE__KIND_STRING_VALUE;
        return v->string_value ? 0 : -1;
    case JSON_INTEGER:
    case JSON_REAL:
        v->number_value = json_number_value(j);
        v->kind_case = GOOGLE__PROTOBUF__VALUE__KIND_NUMBER_VALUE;
        return 0;
    case JSON_TRUE:
    case JSON_FALSE:
        v->bool_value = json_is_true(j);
        v->kind_case = GOOGLE__PROTOBUF__VALUE__KIND_BOOL_VALUE;
        return 0;
    default:
        v->null_value = GOOGLE__PROTOBUF__NULL_VALUE__NULL_VALUE;
        v->kind_case = GOOGLE__PROTOBUF__VALUE__KIND_NULL_VALUE;
        return 0;
    }
}

/* Newly allocated Value, or NULL if j is NULL or memory runs out. Strings
 * with an embedded NUL are cut at the NUL (protobuf-c strings are C strings). */
Google__Protobuf__Value *cdp_json_to_value(const json_t *j)
{
    if (!j)
        return NULL;
    Google__Protobuf__Value *v = malloc(sizeof *v);
    if (!v)
        return NULL;
    google__protobuf__value__init(v);
    if (value_fill(v, j) != 0) {
        protobuf_c_message_free_unpacked(&v->base, NULL);
        return NULL;
    }
    return v;
}

static Google__Protobuf__Struct__FieldsEntry *entry_new(const char *key, const json_t *val)
{
    Google__Protobuf__Struct__FieldsEntry *e = malloc(sizeof *e);
    if (!e)
        return NULL;
    google__protobuf__struct__fields_entry__init(e);
    e->key = strdup(key);
    e->value = cdp_json_to_value(val);
    if (!e->key || !e->value) {
        protobuf_c_message_free_unpacked(&e->base, NULL);
        return NULL;
    }
    return e;
}

Google__Protobuf__Struct *cdp_json_to_struct(const json_t *j)
{
    if (!json_is_object(j))
        return NULL;
    Google__Protobuf__Struct *s = malloc(sizeof *s);
    if (!s)
        return NULL;
    google__protobuf__struct__init(s);
    size_t n = json_object_size(j);
    if (n == 0)
        return s;
    s->fields = malloc(n * sizeof *s->fields);
    if (!s->fields) {
        free(s);
        return NULL;
    }
    const char *key;
    json_t *val;
    /* jansson's iteration API is not const-qualified; it does not modify j. */
    json_object_foreach((json_t *)j, key, val) {
        Google__Protobuf__Struct__FieldsEntry *e = entry_new(key, val);
        if (!e) {
            protobuf_c_message_free_unpacked(&s->base, NULL);
            return NULL;
        }
        s->fields[s->n_fields++] = e;
    }
    return s;
}

/* ------------------------------------------------------------ freeing */

void cdp_struct_free(Google__Protobuf__Struct *s)
{
    if (s)
        protobuf_c_message_free_unpacked(&s->base, NULL);
}

void cdp_value_free(Google__Protobuf__Value *v)
{
    if (v)
        protobuf_c_message_free_unpacked(&v->base, NULL);
}

const Google__Protobuf__Value *cdp_struct_get(const Google__Protobuf__Struct *s, const char *key)
{
    const Google__Protobuf__Value *v = NULL;
    for (size_t i = 0; s && i < s->n_fields; i++)
        if (s->fields[i]->key && strcmp(s->fields[i]->key, key) == 0)
            v = s->fields[i]->value;
    return v;
}
