/* router/child_certs.c and the key text of router/curve.c: a certificate
 * issued for a tree is admitted for that tree only, names the child it was
 * issued to, is refused once revoked or expired, and the
 * "PUBLIC:SECRET:SERVER" text a child receives reads back as it was
 * written, while a malformed one is refused. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <zmq.h>

#include "integration/harness.h"
#include "router/child_certs.h"
#include "router/curve.h"

static void
tree_key(kin__curve_key *k)
{
    assert_int_equal(kin__curve_generate(k), KIN_OK);
    assert_string_equal(k->server, "");
}

static bool
admit(const char *tree_pub, const kin__curve_key *child, bool *expired)
{
    uint8_t raw[32];
    assert_non_null(zmq_z85_decode(raw, child->pub));
    char who[160];
    return kin__child_cert_admit(tree_pub, raw, expired, who, sizeof who);
}

static void
issued_is_admitted_for_its_tree_until_revoked(void **state)
{
    kin__curve_key tree, other, child;
    tree_key(&tree);
    tree_key(&other);
    assert_int_equal(kin__child_cert_issue(&tree, 7, "w", "host-b", &child),
                     KIN_OK);
    assert_string_equal(child.server, tree.pub);
    assert_string_not_equal(child.pub, tree.pub);
    bool expired = true;
    assert_true(admit(tree.pub, &child, &expired));
    assert_false(expired);
    uint8_t raw[32];
    zmq_z85_decode(raw, child.pub);
    char who[160];
    assert_true(
        kin__child_cert_admit(tree.pub, raw, &expired, who, sizeof who));
    assert_string_equal(who, "w (id 7, host-b)");
    assert_false(admit(other.pub, &child, &expired)); /* another tree */
    uint32_t id = 0;
    assert_true(kin__child_cert_owner(child.pub, &id));
    assert_int_equal(id, 7);

    kin__child_cert_revoke(child.pub);
    assert_false(admit(tree.pub, &child, &expired));
    assert_false(expired);
    assert_false(kin__child_cert_owner(child.pub, &id));
}

/* The clock passes ms milliseconds (what expiry is about). */
static void
let_pass(double ms)
{
    double end = harness_now_ms() + ms;
    while (harness_now_ms() < end)
        ;
}

/* A certificate first presented after its lifetime is refused, and the
 * refusal says it expired. */
static void
expired_is_refused_and_said_so(void **state)
{
    kin__curve_key tree, child;
    tree_key(&tree);
    kin__child_cert_set_lifetime(1);
    assert_int_equal(kin__child_cert_issue(&tree, 9, "x", "h", &child), KIN_OK);
    let_pass(3);
    bool expired = false;
    assert_false(admit(tree.pub, &child, &expired));
    assert_true(expired);
    kin__child_cert_set_lifetime(0);
    assert_true(admit(tree.pub, &child, &expired));
    kin__child_cert_revoke(child.pub);
}

/* One presented in time lives as long as its child: its later
 * connections (a log connection made again, a grandchild's) are admitted
 * after the lifetime, until it is revoked. */
static void
used_in_time_does_not_expire(void **state)
{
    kin__curve_key tree, child;
    tree_key(&tree);
    assert_int_equal(kin__child_cert_issue(&tree, 8, "y", "h", &child), KIN_OK);
    bool expired = true;
    assert_true(admit(tree.pub, &child, &expired));
    kin__child_cert_set_lifetime(1);
    let_pass(3);
    assert_true(admit(tree.pub, &child, &expired));
    assert_false(expired);
    kin__child_cert_revoke(child.pub);
    assert_false(admit(tree.pub, &child, &expired));
    kin__child_cert_set_lifetime(0);
}

static void
a_child_certificate_issues_none(void **state)
{
    kin__curve_key tree, child, grandchild;
    tree_key(&tree);
    assert_int_equal(kin__child_cert_issue(&tree, 3, "c", "h", &child), KIN_OK);
    assert_int_equal(kin__child_cert_issue(&child, 4, "g", "h", &grandchild),
                     -EINVAL);
    kin__child_cert_revoke(child.pub);
}

static void
key_text_reads_back(void **state)
{
    kin__curve_key tree, child, back;
    tree_key(&tree);
    assert_int_equal(kin__child_cert_issue(&tree, 5, "c", "h", &child), KIN_OK);
    char text[KIN__KEY_TEXT_LEN];
    kin__curve_format(&child, text);
    assert_int_equal(strlen(text), 3 * 40 + 2);
    assert_int_equal(kin__curve_parse(&back, text), KIN_OK);
    assert_memory_equal(&back, &child, sizeof back);
    kin__curve_format(&tree, text);
    assert_int_equal(strlen(text), 2 * 40 + 1);
    assert_int_equal(kin__curve_parse(&back, text), KIN_OK);
    assert_string_equal(back.server, "");

    /* A server key that is not Z85, a missing separator. */
    kin__curve_format(&child, text);
    text[2 * 41 + 3] = '"';
    assert_int_equal(kin__curve_parse(&back, text), -EINVAL);
    assert_string_equal(back.pub, "");
    kin__curve_format(&child, text);
    text[2 * 41 - 1] = 'x';
    assert_int_equal(kin__curve_parse(&back, text), -EINVAL);
    kin__child_cert_revoke(child.pub);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(issued_is_admitted_for_its_tree_until_revoked),
        cmocka_unit_test(expired_is_refused_and_said_so),
        cmocka_unit_test(used_in_time_does_not_expire),
        cmocka_unit_test(a_child_certificate_issues_none),
        cmocka_unit_test(key_text_reads_back),
    };
    return harness_run_group(tests);
}
