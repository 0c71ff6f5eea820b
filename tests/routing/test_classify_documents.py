"""Document shapes found by an independent red-team set (benchmarks/redteam/): each test names the rule it pins."""

from __future__ import annotations

from routing import normalize
from routing.classify import classify_text
from routing.levels import Level


def signals(text: str) -> set[str]:
    return {s.type for s in classify_text(text).signals}


def test_a_windows_line_break_is_one_break():
    assert normalize.normalise("a\r\nb\rc\n\nd") == "a\nb\nc\n\nd"
    assert normalize.normalise("é\r\nb") == "é\nb"
    # a quoted-printable soft break (= CR LF) inside a word joins it again
    assert "marking_secret" in signals("Content-Transfer-Encoding: quoted-printable\r\n\r\nSEC=\r\nRET\r\n\r\nplan")


def test_text_attributes_of_markup_are_read():
    decoded = normalize.decode(b'<p title="x y"><img alt="SECRET plan"> hi</p><meta content="TOP SECRET">')
    assert "SECRET plan" in decoded.splitlines() and "TOP SECRET" in decoded.splitlines()
    assert "marking_official_sensitive" in signals('<meta name="dc.rights" content="OFFICIAL-SENSITIVE"><p>x</p>')
    assert signals('<a href="/x?q=budget%20plan" title="Open the budget">Budget</a>') == set()


def test_a_role_word_before_a_name_does_not_hide_it():
    assert "justice_context_named_person" in signals("Prisoner Tadeusz Wróblewski refused his breakfast.")
    assert "justice_context_named_person" in signals("Offender Kwabena Asante-Boateng was recalled to prison.")


def test_names_with_particles():
    assert "justice_context_named_person" in signals("YOT: Gethin ap Rhys (15) completed his referral order.")
    assert "justice_context_named_person" in signals("The victim, Daan van der Berg, gave evidence today.")


def test_events_dated_before_1970_are_history_but_a_statute_year_is_not():
    assert classify_text("Guy Fawkes was arrested on 5 November 1605 and executed in 1606.").level == Level.OFFICIAL
    assert classify_text("Ruth Ellis was hanged at HMP Holloway on 13 July 1955.").level == Level.OFFICIAL
    assert "justice_context_named_person" in signals(
        "Statement under the Criminal Justice Act 1967: Marcus Bell saw the assault."
    )
    assert "justice_context_named_person" in signals("Prisoner Tom Baxter was convicted in 1987 of robbery.")


def test_welsh_bilingual_markings():
    assert "marking_official_sensitive" in signals("SWYDDOGOL-SENSITIF / OFFICIAL-SENSITIVE\n\nAdroddiad")
    assert "marking_top_secret" in signals("CYFRINACH IAWN\n\nY cynllun")
    assert classify_text("Beth yw ystyr y gair cyfrinach?").level == Level.OFFICIAL


def test_a_labelled_sort_code_with_the_account_on_the_next_line():
    assert "sort_code_account" in signals("Sort code: 40-11-62\nAccount number: 31926819")
    assert "sort_code_account" not in signals("Sort code: 40-11-62\nPlease call us to confirm.")


def test_a_colleagues_work_address_in_a_message_header_is_routine():
    assert (
        classify_text("From: l.nguyen@hmpps.gov.uk\nTo: a.hussain@hmcts.gov.uk\nSubject: rota").level == Level.OFFICIAL
    )
    assert classify_text("<b>From:</b> Jo Bloggs &lt;jo.bloggs@justice.gov.uk&gt;<br>").level == Level.OFFICIAL
    # the same address in the text, and a personal address in a header, still count
    assert "email" in signals("Her work address is jo.bloggs@justice.gov.uk, please write to her.")
    assert "email" in signals("From: kemi.adebayo77@gmail.com\nTo: casework@justice.gov.uk")
    # a team's mailbox names no one
    assert classify_text("Please write to data.protection@justice.gov.uk").level == Level.OFFICIAL


def test_statements_with_a_descriptor_or_a_header_are_validated_like_the_others():
    assert "marking_official_sensitive" in signals("This paragraph is from a OFFICIAL-SENSITIVE: PERSONAL paper.")
    assert "marking_secret" in signals("Can you proof this? The header reads SECRET - UK EYES ONLY.")
    assert classify_text("When should I use OFFICIAL-SENSITIVE: PERSONAL?").level == Level.OFFICIAL
    assert classify_text("Sir Brian Leveson reviewed the criminal courts in 2024.").level == Level.OFFICIAL


def test_an_organisation_word_that_names_the_street_keeps_a_postcode_personal():
    assert classify_text("Visits to HMP Wandsworth, Heathfield Road, London SW18 3HU").level == Level.OFFICIAL
    assert "uk_postcode" in signals("Address: 3 Station Road, Leeds LS6 2QB")
    assert "uk_postcode" in signals("Flat 2, 10 College Street, Leeds LS6 2QB")
