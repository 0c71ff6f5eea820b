"""Shapes found by the red-team sets of 2026-12-07 (documents_8-10, benchmarks/redteam/): tables, live cases,
colleagues, organisations' details and the decoders they needed. Each test names the rule it pins."""

from __future__ import annotations

import pytest

from routing import normalize, tables
from routing.classify import classify_request, classify_text
from routing.levels import Level

PERSON = "justice_context_named_person"


def signals(text: str) -> set[str]:
    return {s.type for s in classify_text(text).signals}


# --- tables -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "surname,forename,offence\nWhitcombe,Arlo,burglary\n",
        "child;age;placement;missing_episodes\nKaydence Moorcroft;14;residential;4\n",
        "| Name | Hours ordered |\n|---|---|\n| Rhodri Penhaligon | 120 |\n",
        "INSERT INTO nominals (surname, forename, mappa_category) VALUES\n ('O''Reilly','Declan',1);",
        " first_name | last_name | offence\n------------+-----------+--------\n Tobi       | Oduya     | robbery\n",
        'note: {"rows": "defendant,plea\\nMarcus Feeney,guilty\\nAnya Rusu,not guilty"}',
    ],
)
def test_a_person_column_makes_its_cells_people(text):
    assert PERSON in signals(text), text


@pytest.mark.parametrize(
    "text",
    [
        "name,role,team\nAisha Rahman,Senior Probation Officer,Leeds PDU\n",  # colleagues by role
        "name,type,nullable\nfull_name,text,no\noffence_code,varchar,yes\n",  # a schema, not people
        "name,offence\nPerson A,theft\n[REDACTED],burglary\n",  # anonymised
        "def f(self, name, value):\n    return name, value\n",  # code
    ],
)
def test_tables_that_are_not_about_people_in_a_case(text):
    assert PERSON not in signals(text), text


def test_a_header_is_read_folded_and_inside_a_csv_cell():
    header = tables.header_at(b'4411,2026-11-02,"Na\xcc\x81me,Ro\xcc\x81le\nx,y', 20)
    assert header is not None and header[0].cells == ("name", "role") and header[0].staff


def test_a_classification_column_is_a_register_of_markings_unless_it_lists_the_scheme():
    assert "marking_secret" in signals("id;title;classification\n1;Estate plan;SECRET\n2;Menu;OFFICIAL\n")
    scheme = "classification,who\nOFFICIAL,all\nOFFICIAL-SENSITIVE,need to know\nSECRET,SC\n"
    header = tables.header_at(scheme.encode(), 3)
    assert header is not None and tables.marking_in_table(header[0], header[1]) is None


def test_sort_code_and_account_columns():
    assert "sort_code_account" in signals("payee,sort_code,account_number\nA Vane,163591,90872355\n")
    assert signals("field,sort_code,account_number\nexample,000000,00000000\n") == set()


# --- live cases and what is not one -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "R v Adeyinka - sentence adjourned for a pre-sentence report.",
        "T20257710  R v Callum BRIGHOUSE   Trial (day 3)   (custody)",
        "REGINA V. THORNEYCROFT: PTPH LISTED FRIDAY",
        "Counsel's note for HM Advocate v Ruairidh MacAskill.",
    ],
)
def test_a_live_prosecution_names_its_defendant(text):
    assert PERSON in signals(text), text


@pytest.mark.parametrize(
    "text",
    [
        "In R v Brown the defendants were convicted.",  # cited in argument
        "R v Cunningham [1957] 2 QB 396 - subjective recklessness.",  # a law report
        "R v Tesco Supermarkets Ltd is listed for sentence.",  # a company
        "Moot problem: the fictional case R v Hollowell concerns a made-up defendant.",  # invented
        "HM Advocate v Kidd 1960 JC 61 - the classic Scottish authority.",
    ],
)
def test_published_corporate_and_invented_cases_are_not_live(text):
    assert PERSON not in signals(text), text


# --- names: cues, colleagues ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "Please confirm the release date for Oksana HRYTSENKO at HMP Send; she was sentenced at Southwark.",
        "Chen Jiahui (victim of the romance fraud) wants to know if he has been charged.",
        "Re the MAPPA referral for Rhodri ap Gwilym - he is due out of HMP Parc in August.",
        "just spoke to mr qureshi, his son got remanded again at the youth court",
        "cant believe they gave bogdan ionescu bail again after the third breach of the non mol",
        "Adjudication: K.J. Halloran, a prisoner at HMP Lowdham Grange, is charged with fighting.",
        "JEAN-LUC DUBOIS - MAPPA level 2 - registered sex offender",
        "Person on probation: Quentin Abernethy-Lowe\nRequirement: 40 RAR days, 2 missed.",
        "can you expedite the crime LA app for Tyrese Gethin? remanded, first appearance tomorrow",
        "Court user Bartosz Pryce became abusive at the counter and was arrested.",
    ],
)
def test_cues_that_make_a_name_a_persons_in_a_case(text):
    assert PERSON in signals(text), text


@pytest.mark.parametrize(
    "text",
    [
        "Attendees: Samira Osei (Safer Custody Lead), Dan Whitcombe\nAgenda: ACCT audit at HMP Pentonville",
        "[10:42] Priya Ramaswamy\nThe UPW induction had three no-shows; I will raise it at the team meeting.",
        "Re the MAPPA referral process: can we add the fire service?\n\nThanks,\nBethan Lewis\nBridgend PDU",
        "Governor Helen Ashcombe said the new workshop at HMP Send will help women on release.",
        "You are assisting PO Sam Rees in the Swansea PDU with probation policy.",
        "The library at HMP Risley wants a guide to J.R.R. Tolkien's The Hobbit.",
        "Training scenario (characters are fictional): Dean Marlowe, a defendant, was convicted of theft.",
        "Senior Probation Officer Aisha Rahman will chair the panel.",
        "Draft a briefing on the Lord Chancellor's speech about the Crown Court backlog.",
    ],
)
def test_colleagues_officials_authors_and_fiction_are_not_subjects_of_a_case(text):
    assert PERSON not in signals(text), text


# --- organisations' details and published examples ----------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "Visiting HMP Brockhill: Redditch Road, call the visits line on 01527 552 650.",
        "The court's switchboard is 0161 240 5000.",
        "enquiries to enquiries.manchester.crowncourt@justice.gov.uk or vcs.northwest@justice.gov.uk",
        "Author: Hannah Price <hannah.price@justice.gov.uk>",
        "Data dictionary: NINO example AB123456C; IBAN example GB82 WEST 1234 5698 7654 32.",
        "VAT Reg No: GB 788 2310 64   Company No: 08812447   Accounts Payable",
    ],
)
def test_organisations_details_and_published_examples(text):
    assert classify_text(text).level == Level.OFFICIAL, signals(text)


def test_a_colleagues_address_in_the_text_still_counts_and_a_mobile_always_does():
    assert "email" in signals("Her work address is jo.bloggs@justice.gov.uk, please write to her.")
    assert "uk_phone" in signals("HMP Leeds: his mobile is 07912 336 418")


# --- decoders ---------------------------------------------------------------------------------------------------


def test_form_encoded_and_twice_escaped_urls():
    assert "uk_phone" in signals("GET /search?note=new+mobile+is+07912+336+418&u=1 HTTP/1.1")
    assert PERSON in signals("q=reply+to+Aleksandra+Wiercinska%252C+the+victim+of+the+burglary")


def test_rtf_code_page_bytes_escaped_braces_and_nested_documents():
    assert "Siobhán" in normalize.decode(rb"{\rtf1\ansi Statement of Siobh\'e1n N\'ed Bhriain.\par}")
    nested = r"{\rtf1\ansi convert: \{\\rtf1 \{\\b SECRET - UK EYES ONLY\}\\par plan\\par\}}"
    assert "marking_secret" in signals(nested)


def test_letter_spaced_banner_with_gaps_between_words():
    assert "marking_top_secret" in signals("T O P   S E C R E T\n\nJOINT ASSESSMENT")


def test_combining_marks_on_ascii_letters_are_removed():
    assert normalize.normalise("OF\u0301FICIAL Lt\u0327d") == "OFFICIAL Ltd"
    assert normalize.normalise("Zoë") == "Zoë"  # a precomposed letter keeps its diacritic (the folded view reads it)


def test_markings_in_mail_headers_footers_and_tags():
    assert "marking_official_sensitive" in signals(
        "X-Protective-Marking: VER=2012.3, NS=gov.uk, SEC=OFFICIAL-SENSITIVE"
    )
    assert signals("X-Protective-Marking: VER=2012.3, NS=gov.uk, SEC=OFFICIAL") == set()
    assert "marking_official_sensitive" in signals("Appendix C\n\nofficial-sensitive | v1.3 | page 14")
    assert "marking_official_sensitive" in signals("Slide 4 - OFFICIAL SENSITIVE\nSpeaker notes")
    assert "marking_official_sensitive" in signals("    [official-sensitive] add ACCT data fields")
    assert "marking_legacy_protect" in signals('{"classification": "PROTECT"}')
    assert signals("Prevent\nPursue\nProtect\nPrepare") == set()


def test_a_passport_machine_readable_zone():
    assert "passport_mrz" in signals("P<GBROKONKWO<<LEAH<<<<<\n1771571676GBR9104185F3109225<<<<<<<<<<<<<<04")
    assert signals("L898902C36UTO7408122F1204159ZE184226B<<<<<10") == set()  # ICAO's specimen


def test_a_name_split_between_message_parts_at_a_word():
    body = {
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Parole dossier for the victim Siobhan"},
                    {"type": "text", "text": "Ni Bhriain - summarise her statement."},
                ],
            }
        ]
    }
    assert PERSON in {s.type for s in classify_request(body).signals}


# --- files, images and sounds pasted as base64 ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("magic", "kind"),
    [(b"PK\x03\x04", "file"), (b"%PDF-1.7\n", "file"), (b"\x89PNG\r\n\x1a\n", "image"), (b"\xff\xd8\xff\xe0", "image")],
)
def test_base64_of_a_file_in_the_text_is_content_that_cannot_be_read(magic, kind):
    import base64

    blob = base64.b64encode(magic + bytes(range(120))).decode()
    for text in (f"Open this file: {blob}", f'{{"content": "{blob}"}}', f"![scan](data:image/jpeg;base64,{blob})"):
        result = classify_text(text)
        assert result.local_only and kind in result.unscanned, (text[:40], result)
        assert result.readable_level == Level.OFFICIAL  # what could be read is OFFICIAL: a backend may accept it
    assert classify_text("The PNG signature starts iVBORw0KGgo in base64.").level == Level.OFFICIAL


def test_numbers_as_ocr_reads_them():
    assert "nhs_number" in signals("NHS No: 634 659 l29O")  # l for 1, O for 0
    assert "ni_number" in signals("National lnsurance No: SH 6l 94 27 A")
    assert normalize.decode(b"DoB: O9/O3/l994").strip() == "DoB: 09/03/1994"
    assert classify_text("compile with -O3 and the I01 flag").level == Level.OFFICIAL


# --- the justice vocabulary: custody, offences, courts, probation, youth justice and safeguarding as staff write them


@pytest.mark.parametrize(
    "text",
    [
        "Connor Walsh was jailed for six years at Leeds.",
        "Kayleigh Brooks' bail application is listed for Friday.",
        "Marcus Jones failed to surrender at Highbury this morning.",
        "Dean Foster, category B prisoner, moves to Garth next week.",
        "Ryan Cole is on a tag until March and wants to vary the hours.",
        "Tanya Reid pleads not guilty to affray.",
        "Jordan Price was interviewed under caution about the GBH.",
        "Liam Shaw is on a youth rehabilitation order with the YOT.",
        "Amelia Grant (14) was placed into care; section 47 enquiries are ongoing.",
        "Harvey Mills took an overdose on Tuesday night and is now on constant watch.",
        "Shane Rowley's trial starts Monday; indictment served.",
        "Paula Dunn's release date has moved to 14 June.",
        "Kieran Ashdown was recalled on Friday after the police call-out.",
        "Łukasz Nowak's licence was revoked yesterday.",
    ],
)
def test_what_staff_write_of_a_case_is_justice_context(text):
    assert PERSON in signals(text), text


@pytest.mark.parametrize(
    "text",
    [
        "Hi all, Sarah Jones will run the jury room refurbishment project from Monday.",
        "Please send bail information queries to Darren Lee in the listings office.",
        "Thanks to Priya Patel for the release date of the new software version.",
        "Mark Evans is on basic training this week, back Monday.",
        "The strategy meeting is chaired by Helen Ward, Head of Operations.",
        "Emma Wilson's foster care policy paper is attached for comment.",
        "Jane Doe pleaded with the council to fix the roof.",
        "HM Chief Inspector of Prisons Charlie Taylor said conditions at the jail were among the worst he had seen.",
        "The Secretary of State for Justice, Alex Chalk, announced the early release scheme.",
    ],
)
def test_the_same_words_in_ordinary_work_or_of_an_office_holder_are_not(text):
    assert PERSON not in signals(text), text


def test_a_probation_crn_in_lower_case_only_right_after_its_label():
    assert "probation_crn" in signals("crn x123456 breach, can u chase")
    assert "probation_crn" not in signals("probation dashboard build v123456 deployed")


def test_a_rejected_colleague_address_does_not_count_by_its_tail():
    """A colleague's address alone on a signature's line is rejected; the search goes on inside it, and the tail
    it then finds ("siddiqui@justice.gov.uk") is part of the same address, not one of its own."""
    assert "email" not in signals("Thanks,\n\nOmar Siddiqui\nLegal Aid Agency\nomar.siddiqui@justice.gov.uk\nTel")
    assert "email" in signals("write to omar.smith@gmail.com")


@pytest.mark.parametrize(
    "text",
    [
        "Croeso i Dafydd Pritchard-Jones - our new SPO for Caernarfon office! RAR days queries to him please.",
        "Keeley Hatherall from the safeguarding hub called about the county lines workshop.",
        "Draft a farewell message for Brian Hulme, who is retiring after 34 years as a court clerk at the magistrates.",
        "Court 2: Recorder Aziz - Mentions. Court 3: HH Judge Whitcombe - Trial (continued)",
    ],
)
def test_colleagues_by_what_a_workplace_says_of_them_and_judges_by_office(text):
    assert PERSON not in signals(text), text


@pytest.mark.parametrize(
    "text",
    [
        "SECRET SANTA 2024\nSign up by 29 November. Spending limit £10.",
        "Put the marking in square brackets at the start of the subject, e.g. [OFFICIAL-SENSITIVE].",
        "From: Gemma Threlfall\nSent: 04 June 2024 09:12\nSubject: RE: transfers with open CSIPs\n\nwho confirms the "
        "CSIP review before the escort to the receiving prison?",
        "Help me write a reference for my colleague Marta Silva, applying for a policy role in the Youth Justice team.",
        "A new Approved Premises opens in Bedford on 1 August; thanks to the AP manager Jodie Marsh.",
        "HM Chief Inspector of Prisons, Charlie Taylor, described conditions at the jail as among the worst seen.",
        "-- synthetic fixtures for the unit test (NOT real people)\n-- TEST001 | Kyle Brennan | prisoner | remand",
        "Write a regex for a full UK postcode such as SW1A 1AA, with or without the space.",
        "What do the parts of a prison number mean? It looks like the usual example A1234BC.",
    ],
)
def test_examples_test_data_colleagues_and_office_parties_are_not_cases(text):
    assert not classify_text(text).signals, text


@pytest.mark.parametrize(
    "text",
    [
        "Subject: official sensitive - STC staffing contingency\n\nStaffing fell below safe levels.",
        "Grievance: a clerk alleges her colleague Hollie Pennock is under police investigation for stalking her.",
        "Disciplinary investigation: court usher Reece Begum failed to declare a caution for common assault.",
        "HOME VISIT 11/06 - joint with police DAPO\n- 38 Glebe Street, Burnley BB11 2LR (new address)",
        "the probate applicant says refund to 60-83-71 / 20145588 - name on acc is Mrs P. Achterberg",
        "07/06/2024  14:21  88,064  X731604_PSR_final_v3.docx",
    ],
)
def test_a_colleague_in_a_case_a_home_address_and_labelled_numbers_still_count(text):
    assert classify_text(text).level >= Level.OFFICIAL_SENSITIVE, text


@pytest.mark.parametrize(
    "text",
    [
        "Youth Court - 10/06 - Kayden (16)\n- charged with robbery of a phone at knifepoint",
        "Draft the panel report: Amira, 14, first offence, shoplifting £60 of makeup with two friends.",
        "Young person: J.M. (15) - remanded, arrived 28/05",
        "Mae Rhiannon Pritchard, a gafodd ei hymosod arni, wedi rhoi tystiolaeth yn Llys y Goron Casnewydd.",
        "Person ifanc: Cai Williams (15)\n- Wedi'i arestio ddydd Sadwrn am ddwyn o siop yng Nghaernarfon.",
        "Adalat ne Mohammed Asif Rahman ko dhoke ke jurm mein 3 saal qaid ki saza di hai.",
        "Big Dave (David Kirkby, C2-31) has been going round the cells on the wing taxing the new lads for vapes.",
        "16:05 code blue called, John McGuire found unresponsive by his cellmate, suspected psychoactive substance",
        "Hi Dean, you missed your appointment today. Dean Hollis replied that his tag was playing up.",
    ],
)
def test_a_young_persons_age_welsh_and_the_wings_words_are_justice_context(text):
    assert PERSON in signals(text), text


@pytest.mark.parametrize(
    "text",
    [
        "In June, 14, 15 and 16 prisoners were released early.",
        "Room (12) is booked for the sentencing training.",
        "Croeso i'r tîm, Siân Jones! Mae hi'n gweithio ar ddiogelu data.",
    ],
)
def test_numbers_after_months_and_rooms_and_welsh_office_news_are_not(text):
    assert PERSON not in signals(text), text


@pytest.mark.parametrize(
    ("text", "signal"),
    [
        ("Discharge summary received, NHS no. 472605\n1180, seen at A&E for a head injury.", "nhs_number"),
        ("The caller gave their card as 4547 3091\n8264 5512 to pay the court fine.", "payment_card"),
        ("Compensation payment\nIBAN: GB16 HBUK 4011\n6271 5582 03\nRef: CICA top-up", "iban"),
        ("National Insurance number given: JT 48 27\n61 C", "ni_number"),
        ("Prison number: A 9 1 3 7 F N\nWing: C  Cell: 2-07", "prison_number"),
        ("| National Insurance number | | |\n|---|---|---|\n| H | L | 3 | 0 | 9 | 2 | 6 | 4 | C |", "ni_number"),
    ],
)
def test_identifiers_broken_at_a_line_or_spaced_out_are_read_whole(text, signal):
    assert signal in signals(text), text


def test_numbers_at_line_ends_without_a_label_are_not_joined():
    assert not classify_text("row,4726051\n180,12\nrow,4547309\n18264551,2").signals


@pytest.mark.parametrize(
    ("text", "signal"),
    [
        (
            "<CourtList><Case><Defendant><Forename>Tyler</Forename><Surname>Mumford</Surname></Defendant>\n"
            "<Offence>Assault occasioning actual bodily harm</Offence></Case></CourtList>",
            PERSON,
        ),
        ("PNC ID 2019\u22150482913U - check the custody record before the interview", "pnc_id"),
        ('{"name": "Ryan Stott", "licence_status": "active", "mobile": 447834512906}', "uk_phone"),
    ],
)
def test_xml_name_parts_look_alike_slashes_and_numbers_stored_without_plus(text, signal):
    assert signal in signals(text), text


def test_a_bare_number_needs_a_phone_label_and_an_organisations_line_stays_official():
    assert not signals("order id 447834512906 shipped")
    assert not signals('<p>Ministry of Justice switchboard - <a href="tel:+442033343555">020 3334 3555</a></p>')


@pytest.mark.parametrize(
    "text",
    [
        "we attended the police station for mohammed al-rashid on 3 june (arrested for robbery at Lewisham)",
        "NOTICE OF REPORT\nPrisoner: McALLISTER, Brendan   Wing/cell: B2-14\nCharge: Para 1 - commits any assault",
    ],
)
def test_surname_particles_in_lower_case_and_mc_in_capitals(text):
    assert PERSON in signals(text), text


def test_a_room_named_like_a_surname_is_no_person():
    text = "Course: Victim awareness refresher\nVenue: Training Room 2\nFacilitator: Anna Kowalczyk (L&D)\nPlaces: 12"
    assert PERSON not in signals(text)


@pytest.mark.parametrize(
    ("text", "signal"),
    [
        (
            '{\n  "prisoner": {\n    "firstName": "Jamie",\n    "lastName": "Fairclough",\n    "establishment": "HMP '
            'Garth"\n  },\n  "adjudication": {"charge": "Possession of an unauthorised article"}\n}',
            PERSON,
        ),
        ("API|FLT=BA0872|SURNAME=POPESCU|GIVEN=ANDREEA|DOB=19930517|ESCORT=Y prisoner transfer", PERSON),
        (
            "2024-10-16T13:02:44Z INFO doc-ingest upload ok id=7f3c1e doc_class=OFFICIAL-SENSITIVE",
            "marking_official_sensitive",
        ),
        ("Files attached to case 21/04567 bundle:\n- 02_Hollis_Jason_VPS_victim_statement.docx", PERSON),
        ("s3://evidence/witness/2024/06/KOWALCZYK_Ewa_1990-02-17_statement_signed.pdf", PERSON),
    ],
)
def test_name_fields_a_logs_class_field_and_names_in_file_names(text, signal):
    assert signal in signals(text), text


@pytest.mark.parametrize(
    "text",
    [
        '{"firstName": "John", "lastName": "Doe"} is the example record for the prisoner API',
        "SELECT * FROM offenders WHERE surname = 'TESTSURNAME' AND forename = 'TESTFORENAME';",
        "I need to match UK postcodes like SW1A 1AA in a validation function.",
        "Documents:\n- Government_Security_Classifications_Policy_June_2023.pdf (PDF, 412 KB)",
    ],
)
def test_placeholder_names_example_postcodes_and_policy_file_names_are_not(text):
    assert not classify_text(text).signals, text


def test_a_given_name_with_where_a_prison_holds_them():
    assert PERSON in signals("anyone know if Kyle on B2 got his HDC address approved?")
    assert PERSON in signals("Key work session 07/06 - Abdirahman, F wing. Mostly talked about his IPP.")
    assert PERSON not in signals("Please book Sarah in B2 meeting room for the parole training.")


def test_surname_comma_given_in_title_case_and_a_query_key_as_its_values_label():
    assert PERSON in signals("Dabrowski, Tomasz - remanded in custody at Leicester")
    assert PERSON not in signals("Leeds, Bradford and Wakefield probation offices")
    assert PERSON in signals("GET /courtlists/search?defendant=D%C4%85browski%2C%20Tomasz&court=Leicester HTTP/1.1")
    form = "prompt=OFFICIAL-SENSITIVE+%E2%80%93+LEGAL+PRIVILEGE%0A%0AAdvice+to%3A+Head+of+Policy"
    assert "marking_official_sensitive" in signals("POST /ask HTTP/1.1\n\nsession=7f3a9c&" + form)


@pytest.mark.parametrize(
    ("text", "signal"),
    [
        (
            "I have document with the mark OFFICIAL-SENSITIVE on the top, please improve the english",
            "marking_official_sensitive",
        ),
        ("its off-sen so dont share anywhere but can u tidy this para", "marking_official_sensitive"),
        ("mrs k. brennan rang, her son kyle got a 12 month DTO at the youth court today", PERSON),
        ("WARN recall-notify failed for subject 'Bilal Chaudhry' (recall_type=FIXED_TERM, pdu=Leeds)", PERSON),
        ("ViSOR update - Nguyen Van Minh, registered sex offender. Failed to notify foreign travel.", PERSON),
        ("Hamza Qureshi (B3-11) on ACCT - superficial cuts to forearm found at unlock.", PERSON),
        ("Dear Governor,\nMy name is Sunil Rao I am on D wing cell D2-31. Waiting 5 weeks for my cat C move.", PERSON),
    ],
)
def test_set_15s_categories(text, signal):
    assert signal in signals(text), text


def test_a_marking_with_a_sentence_after_it_opening_an_embeddings_input():
    body = {"model": "m", "input": ["OFFICIAL-SENSITIVE. Parole Board capacity review. Section 1: the backlog."]}
    assert "marking_official_sensitive" in {s.type for s in classify_request(body).signals}


@pytest.mark.parametrize(
    "text",
    [
        "this is top secret lol, don't tell anyone about the surprise party",
        "Helen Achterberg has invited you to: Crown Court recovery - listing workshop\nAttendees: Rajesh Menon",
        "Write a piece on Elizabeth Fry's prison reform work at Newgate in the 1810s.",
        "Congratulations to Marcus Liddell, probation service officer in the Bolton PDU, who has been shortlisted.",
        "Use the GOV.UK Pay sandbox test card 4444 3333 2222 1111 for local testing of fines payments.",
        "TRAINING EXERCISE - FICTIONAL DATA ONLY\nName: Joe Bloggs   DOB: 01/01/1980\nOffence (fictional): theft",
    ],
)
def test_banter_invitations_history_awards_test_cards_and_exercises_are_not(text):
    assert not classify_text(text).signals, text


def test_a_name_alone_whose_case_the_next_words_are():
    assert PERSON in signals("okafor's licence conditions need varying, new address approved by CAS3")
    assert PERSON in signals("Shane's solicitor emailed - he wants his bail conditions varied")
    assert PERSON not in signals("Sarah's release notes for the sentencing calculator are attached")


def test_a_given_name_after_a_description_and_a_name_with_another_in_brackets():
    assert PERSON in signals("I've got a lad called Lorcan on my caseload, just released from HMP Altcourse.")
    assert PERSON in signals("WANG Zihan (goes by Kevin) - FNO, finished his sentence for the cannabis grow")
    assert PERSON not in signals("I called Sarah about the probation rota.")


def test_a_fixed_width_records_ni_number_and_a_surname_first_file_name():
    record = "19244038WHITTAKER           JOANNE         LJ000864C1978020320100559585508000354136"
    assert "ni_number" in signals("Payroll interface, one record:\n" + record)
    assert PERSON in signals("PSR_Rowbotham_Demi_final_v2.docx       2 days ago     Court Team")


def test_an_escaped_line_breaks_letter_does_not_start_an_ni_number():
    note = '{"note": "The ICAO 9303 specimen reads:\\nL898902C36UTO7408122F1204159ZE184226B<<<<<10"}'
    assert "ni_number" not in signals("Can you tidy up this record? " + note)


def test_a_surname_alone_with_what_was_done_to_them():
    assert PERSON in signals("okafor was remanded in custody yesterday")
    assert PERSON not in signals("A 34-year-old man from Hull was jailed for six years at Hull Crown Court yesterday.")
    assert PERSON not in signals("the prisoner was remanded")


def test_someone_on_bail_and_not_a_policy_on_bail_accommodation_nor_a_new_starter():
    assert PERSON in signals("Kyle Brennan, on bail for the burglary, missed his curfew")
    assert PERSON not in signals("Our policy on bail accommodation support is attached; Helen Ward leads the review.")
    assert PERSON not in signals("The new starter, Jamal Khan, joins the Birmingham PDU on Monday as a probation PSO.")


def test_a_number_sent_in_two_messages_is_read_across_the_seam_and_nothing_else_is_joined():
    def signals(*turns: tuple[str, str]) -> set[str]:
        body = {"model": "m", "messages": [{"role": role, "content": text} for role, text in turns]}
        return {s.type for s in classify_request(body).signals}

    assert "nhs_number" in signals(("user", "his nhs number is 943 476"), ("user", "5919 sorry, cut off"))
    parts = [{"type": "text", "text": "56 C"}]
    turns = [{"role": "user", "content": "NI number is JK 12 34"}, {"role": "user", "content": parts}]
    body = {"model": "m", "messages": turns}
    assert "ni_number" in {s.type for s in classify_request(body).signals}
    assert signals(("user", "meeting at 10"), ("assistant", "2 people confirmed")) == set()


@pytest.mark.parametrize(
    "text",
    [
        '"enum": [\n    "OFFICIAL",\n    "OFFICIAL-SENSITIVE",\n    "SECRET",\n    "TOP SECRET"\n]',
        'MARKING_RE = re.compile(r"\\b(OFFICIAL[-\\s]SENSITIVE|TOP SECRET|SECRET)\\b")',
        "Sensitivity: OFFICIAL | OFFICIAL-SENSITIVE | SECRET (pick one)",
        "allowed_markings:\n  - OFFICIAL\n  - OFFICIAL-SENSITIVE\n  - SECRET\ndefault_marking: OFFICIAL",
    ],
)
def test_a_list_of_the_schemes_levels_is_no_marking(text):
    assert classify_text(text).level == Level.OFFICIAL


def test_a_tool_schemas_enum_of_levels_is_read_as_the_list_it_is():
    marking = {"type": "string", "enum": ["OFFICIAL", "OFFICIAL-SENSITIVE"]}
    schema = {"type": "object", "properties": {"marking": marking}}
    tool = {"type": "function", "function": {"name": "save", "parameters": schema}}
    body = {"model": "m", "messages": [{"role": "user", "content": "save this"}], "tools": [tool]}
    assert classify_request(body).level == Level.OFFICIAL
    # a list of short strings is one text: what it holds is still found
    found = classify_request({"model": "m", "input": ["943 476 5919", "A1234BC"]}).signals
    assert {s.type for s in found} == {"nhs_number", "prison_number"}


@pytest.mark.parametrize(
    "text",
    [
        "classification: SECRET, SECRET",
        "SWYDDOGOL-SENSITIF / OFFICIAL-SENSITIVE\nNodyn",
        "OFFICIAL-SENSITIVE, PERSONAL\nLetter to the Parole Board",
        '{"classification": "SECRET", "owner": "ops"}',
    ],
)
def test_a_marking_beside_the_same_level_or_a_descriptor_still_counts(text):
    assert classify_text(text).level >= Level.OFFICIAL_SENSITIVE


def test_a_public_buildings_postcode_and_a_line_in_its_address_are_no_ones_home():
    signature = "Rosalind Eke\nHR Business Partner\n102 Petty France, London SW1H 9AJ\nTeams / 020 3334 3555"
    assert classify_text(signature).level == Level.OFFICIAL
    assert classify_text("Deliveries go to the Royal Courts of Justice, Strand, London WC2A2LL").level == Level.OFFICIAL
    assert "uk_postcode" in {s.type for s in classify_text("she lives at 102 Petty France, London SW1H 9AJ").signals}


@pytest.mark.parametrize(
    "text",
    [
        "Tell me about Elizabeth Fry and her work at Newgate Prison in the early 19th century.",
        "What did the Independent Sentencing Review chaired by David Gauke recommend, in broad terms?",
        "I'm writing a radio play set in a Victorian prison. Give me a scene where the warder and a young pickpocket"
        " called Artful Tom argue about the treadmill.",
        "INT. HMP BLACKWATER - VISITS HALL - DAY\n\nJONAH CREE (40s, tired) sits across from his daughter KIT (17).",
        "For a prison reading group, a question about Magwitch, the escaped convict in Charles Dickens's novel.",
        "Draft a letter to Shabana Mahmood MP about family visits in women's prisons.",
    ],
)
def test_history_fiction_and_public_figures_by_their_office_are_no_case(text):
    assert classify_text(text).level == Level.OFFICIAL


def test_novel_psychoactive_substances_are_no_novel():
    text = "the prisoner Jade Smith has been found with novel psychoactive substances on B wing"
    assert "justice_context_named_person" in {s.type for s in classify_text(text).signals}


def test_two_ordinary_words_that_are_also_names_are_no_name_in_lower_case():
    text = 'Make the tone warmer but keep it formal: "When you write to an employee about a grievance, ..."'
    assert classify_text(text).level == Level.OFFICIAL
    assert classify_text("darren whitlock has a grievance hearing on monday").level == Level.OFFICIAL_SENSITIVE


def test_text_in_a_script_the_rules_cannot_read_stays_home_unless_it_says_it_is_published():
    letter = "اس خط کا انگریزی میں ترجمہ کریں: میرے بیٹے عمران بشیر کو جو ایچ ایم پی برمنگھم میں ہے"
    c = classify_text(letter)
    assert c.level == Level.OFFICIAL_SENSITIVE and c.unscanned == {"script"}
    assert c.level_for(frozenset({"script"})) == Level.OFFICIAL  # a backend that accepts the kind
    body = {"model": "m", "messages": [{"role": "user", "content": "Translate: Мене звати Оксана. Мій син боїться."}]}
    assert "unscanned_script" in {s.type for s in classify_request(body).signals}
    for text in (
        "σ² = Σ(x − μ)²/n where α = 0.05 and β is the slope",  # a formula's single letters
        "please translate for the prison library poster: 鲁迅在《故乡》里写道：其实地上本没有路，"
        "走的人多了，也便成了路。",
        'Translate "Welcome to visits" into Polish: Witamy w sali widzeń',  # a Latin script is read
    ):
        assert classify_text(text).level == Level.OFFICIAL, text


@pytest.mark.parametrize(
    "text",
    [
        "Subject: RE: [OS] Tender evaluation - electronic monitoring lot 2",
        "[10:41] Priya\nthis is OS so dont forward pls",
        "4.4 Paperwork was incomplete.\nOFFICIAL - SENSITIVE                    Draft report - not for circulation"
        "     7",
    ],
)
def test_official_sensitive_as_staff_abbreviate_it_and_a_footers_next_column(text):
    assert classify_text(text).level == Level.OFFICIAL_SENSITIVE


@pytest.mark.parametrize(
    "text",
    [
        "Download the map data (OS) for Leeds",
        "this is OS-agnostic code",
        "DisplayName          Priority Guid\nOFFICIAL                    0 5f1b2c44-0a9e\n"
        "OFFICIAL-SENSITIVE          1 9a2f0c41-7d1e",
    ],
)
def test_os_in_other_senses_and_a_label_table_are_not(text):
    assert classify_text(text).level == Level.OFFICIAL


@pytest.mark.parametrize(
    "text",
    [
        "rhys (15) got stopped again last nite w the older lads, found 2 phones on him. worried its county lines",
        "Turner breached his curfew again last night - EM data shows the tag leaving the address at 01:12",
        "I, Siobhán Ní Bhriain, make this statement about what happened on the night of 4 August.",
        "Mae Ffion Pryce-Jenkins (16 oed) wedi cael ei chyfeirio at y tîm diogelu.",
        "Ștefan Bălănescu, 27 de ani, deținut pe aripa D, declară că a fost agresat de colegul de celulă.",
        "Mr Oluwaseun Adeyemi-Bakare (59) has a learning disability; his nephew is taking his PIP each week",
        "Priya Ramaswamy has been suspended on full pay pending investigation into her travel claims",
    ],
)
def test_named_people_in_casework_and_as_chat_and_other_languages_write_them(text):
    assert "justice_context_named_person" in {s.type for s in classify_text(text).signals}


@pytest.mark.parametrize(
    ("text", "signal"),
    [
        ("Beneficiary IBAN: PL61 1090 1014 0000 0712 1981 2874", "iban"),
        ("[09:14:45] Visitor: card is 54663212 09970041 exp 11/26", "payment_card"),
        ("KOWAL955213MA9THSP302025021803Northampton Magistrates'", "driving_licence"),
        (
            "Right, item five. Just to say this item is OFFICIAL-SENSITIVE so it'll be minuted separately.",
            "marking_official_sensitive",
        ),
        (
            "The following is an extract from a document marked Official Sensitive - please keep it inside the team.",
            "marking_official_sensitive",
        ),
        (
            "[21:07] Wiktor Sadowski\ndid you hear about Kowalski on B3\n[21:07] Wiktor Sadowski\nligature found",
            "justice_context_named_person",
        ),
    ],
)
def test_set_18s_categories(text, signal):
    assert signal in {s.type for s in classify_text(text).signals}


@pytest.mark.parametrize(
    "text",
    [
        "IBAN DE89370400440532013000 is the example in the bank's API docs",
        "A document marked Official Sensitive must be stored securely.",
        "#hmcts-listing-leads\n*Dan Okonkwo* 09:12\nheads up: court 1 heating is out again, trials might move",
        "Update the CPD entry: Dr Eamon Gallagher's grand round on delirium management has moved to Thursday.",
        "meet in York on B2 floor, ACCT training",
    ],
)
def test_set_18s_benign_twins(text):
    assert classify_text(text).level == Level.OFFICIAL


@pytest.mark.parametrize(
    "text",
    [
        "Sign off as:\n\nAaliyah Brathwaite\nUnpaid Work Placement Coordinator | Lambeth & Southwark\n"
        "Probation Service",
        "Court 2   HHJ Amarjit Sandhu   Sentences\nCourt 3   Mr Recorder Lindqvist   PTPHs\nCourt 4   trials",
        "Monday: Sheriff MacLeod - custody court\nWednesday: Summary Sheriff Ross - domestic abuse court",
        "Prison library record\nauthor: Paul B. Janeczko\nshelf: puzzles",
        "site:\n  name: Honour-Based Abuse Guidance\n  maintainer: Ravinder Dhillon\n  team: Safeguarding Policy",
        '{"team":"Safeguarding Policy Unit","members":[{"name":"Amara Nwosu","role":"Senior Policy Adviser"}]}',
        "Reducing Reoffending Conference\n2. Daniel O'Rourke - Head of Commissioning, Probation Service",
        "From 1 September the Brixton probation team moves to Marcus Garvey House, 2nd floor.",
        "Kowalczyk's 2019 paper on bail hostel outcomes (Howard Journal of Crime and Justice) found lower breach rates",
    ],
)
def test_staff_by_their_role_authors_office_holders_and_buildings_are_no_case(text):
    assert classify_text(text).level == Level.OFFICIAL


def test_a_role_field_does_not_hide_an_hr_case():
    text = '{"name": "Priya Ramaswamy", "role": "Finance Officer", "case": "gross misconduct investigation"}'
    assert "justice_context_named_person" in {s.type for s in classify_text(text).signals}


@pytest.mark.parametrize(
    "text",
    [
        "Panel 2 speakers\n1. Chair: Prof. Nadia Hussain - University of Leeds\n"
        "2. Leyla Demir - CEO, Second Chance Trust",
        "the Lord Chancellor and Secretary of State for Justice, Shabana Mahmood, today set out plans to tackle prison"
        " overcrowding. Ms Mahmood said the changes were necessary.",
        "| Name | Organisation | Role |\n|---|---|---|\n| Kacper Nowicki | Youth Justice Service | Practice Manager |",
        '{"members":[{"name":"Kevin Lowe","role":"Team Leader","ext":"4409"}],"team":"Safeguarding Policy"}',
    ],
)
def test_speakers_a_minister_named_again_and_a_tables_roles_are_no_case(text):
    assert classify_text(text).level == Level.OFFICIAL


@pytest.mark.parametrize(
    "text",
    [
        "Cost centre\tBudget (£k)\tOutturn (£k)\nProbation - Approved Premises\t46,030\t45,880",
        "From: Fiona McLeod <fmcleod@mcleod-family-law.co.uk>\r\nTo: LAA Civil Billing\r\nSubject: bill rejected",
        "Message-ID: <LO2P265MB5432A1C9E4B0F2D4@LO2P265MB5432.GBRP265.PROD.OUTLOOK.COM>\r\nSubject: bounce",
        "BEGIN:VCARD\r\nORG:HMCTS;Camberwell Green Magistrates' Court\r\n"
        "ADR;TYPE=WORK:;;15 D'Eynsford Road;London;;SE5 7UP",
        "In The Shawshank Redemption, Andy Dufresne spends two decades in prison. How does the film portray it?",
    ],
)
def test_set_18s_benign_twins_second_round(text):
    assert classify_text(text).level == Level.OFFICIAL


@pytest.mark.parametrize(
    ("text", "signal"),
    [
        ("From: jade.okafor88@gmail.com\r\nSubject: my son's licence", "email"),
        (
            "2098612588323209960000120 MOJ WITNESS EXP   WEX250311-0042    NOWAK MAGDALENA",
            "justice_context_named_person",
        ),
        (
            "prisoner known as Skinny D was seen passing a package wrapped in cling film to Lewis Okoro",
            "justice_context_named_person",
        ),
    ],
)
def test_set_18s_second_round(text, signal):
    assert signal in {s.type for s in classify_text(text).signals}


@pytest.mark.parametrize(
    "text",
    [
        "DB_PASSWORD=Tr0ub4dor&3xyz",
        '"apiKey": "AIzaSyD-9tSrke72PouQMnMX-a7eZSW0jkFMBWY"',
        "postgres://admin:S3cr3tPass!@db.internal:5432/app",
        "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA",
        "export OPENAI_API_KEY=sk-proj-abcdefghijklmnopqrstuvwxyz0123456789ABCD",
    ],
)
def test_a_credential_stays_home(text):
    assert "credential" in {s.type for s in classify_text(text).signals}


@pytest.mark.parametrize(
    "text",
    [
        "password: changeme",
        "postgres://user:password@localhost/db",
        "aws_access_key_id = AKIAIOSFODNN7EXAMPLE",
        'token = os.environ["API_TOKEN"]',
        "password=${DB_PASSWORD}",
        "stringData:\n  DB_USER: REPLACE_ME\n  DB_PASSWORD: REPLACE_ME",
        "Slide 4\r\n=E2=80=A2 SECRET =E2=80=93 very sensitive information",
        "Your password: must contain at least 12 characters",
    ],
)
def test_placeholders_examples_and_lookups_are_no_credential(text):
    assert "credential" not in {s.type for s in classify_text(text).signals}


@pytest.mark.parametrize(
    ("text", "signal"),
    [
        ('PAYMENTS_API_KEY = "sk_live_dgbn2gHPbGbvQ4Z8H63zy3Dmk55KgTAX"', "credential"),  # a compound name
        ('"PASSWORD": "xNkyQpnAg9TtPk",', "credential"),  # a value starting with x is no "xxx" placeholder
        ("user svc_reports  pass  Harbour7!Light  (live and DR)", "credential"),
        ("The temporary password is Bluebell2025# until you change it.", "credential"),
        ("logged on to the DB server using sa / Summer2024! to clear the locks", "credential"),
        ("Key safe by the back door: 4-7-1-9", "access_code"),
        ("door code 2580#, key safe C-1-9-8-4", "access_code"),
        ("Intruder alarm unset code: 7865 (panel in the cleaner's cupboard)", "access_code"),
        ("the gate override PIN 4471-9 opens G2 when the reader fails", "access_code"),
        ("10.42.9.20 door control PLC (CVE-2021-22681), no patch planned until Q4", "security_weakness"),
        ("The visits API on prod lacks authorisation on /export; not yet remediated.", "security_weakness"),
        ("EMBARGOED UNTIL 09:30 THURSDAY\nProven reoffending statistics (draft)", "embargoed"),
        ("Draft: not for publication before the Minister's statement on Monday.", "embargoed"),
        # a page footer as pdftotext lays it out, the marking in Word's title case
        ("Retest status: OPEN\n\nOfficial Sensitive      Justice Digital ITHC      12", "marking_official_sensitive"),
        ("local admin is vbadmin / Copper#70thistle@", "credential"),  # a strong value after "user / "
        ("    JUSTICE\\da_emergency / Granite$43granite!", "credential"),
        ("new pw for the secure LAN wifi (SSID FLG-SEC-OPS) is Otter&24saffron? from today", "credential"),
        ("$pass = ConvertTo-SecureString 'Granite!57falcon?' -AsPlainText -Force", "credential"),
        ("CREATE LOGIN [etl] WITH PASSWORD = N'Bramble!52kestrel?', CHECK_POLICY = ON;", "credential"),
        ("We use the live key api_live_4gfxw2f7h5axslvds9yxjk418f", "credential"),
        ('  udl_password: "95956314"', "credential"),  # a PIN-like password under a password key
        ('  engineer_code: "887090"', "access_code"),
        ("The new code for the staff gate (Oystermouth Rd side) is 7244# from today.", "access_code"),
        ("FACTUAL ACCURACY DRAFT - NOT FOR PUBLICATION - EMBARGOED UNTIL PUBLICATION DATE", "embargoed"),
        ("The following paragraph is from a document marked SECRET - please shorten it.", "marking_secret"),
        # a table's column of codes or passwords (routing.tables)
        ("| Site | Gate code | Key safe |\n|---|---|---|\n| Elm House | 4510# | 5475 |", "access_code"),
        ("Title\tUsername\tPassword\nKiosk\tkioskadm\tFennel83harbour", "credential"),
    ],
)
def test_secrets_access_codes_and_weaknesses_stay_home(text, signal):
    assert signal in {s.type for s in classify_text(text).signals}


@pytest.mark.parametrize(
    "text",
    [
        "STRIPE_SECRET_KEY=sk_test_your_key_here",
        "secret = bytes(password, self.encoding)",  # code, not a secret
        "pw = pw[:-1]",
        "Join the meeting: Meeting ID 384 551 902 117, Passcode: Xr7mQ2",
        "Passwords must have 14 characters; pass 2 of 3 checks.",
        "The password policy changed on 01/04/2025.",
        "We logged in at 09:15 / 17:30 each day.",
        "Return the keys to the key safe at the end of every shift.",
        "The door code changed in 2024; ask reception for the new one.",
        "A key safe code needs at least 4 digits.",
        "We hold the key safe code; ring 0113 496 0000 out of hours.",
        "Unpatched servers are the commonest way in for ransomware: patch within 14 days.",
        "CVE-2021-44228 explained for service owners, with the published fixes.",
        "The server at 10.20.4.14 was patched on Tuesday.",
        "The press release on the funding goes out on Saturday, embargoed till 00:01.",
        "Use and/or; 24/7 support; TCP/IP; Q3 / FY2024-25 report",
        "Price: \u00a34.99 / \u00a35.99! Offer ends Friday.",  # folded, "GBP5.99!" is a price, not a password
        "new code review: PR 4521 merged",
        "The new code of practice 2024 applies from April.",
        "password: 12345678",
        "the password policy for 2024 is 14 characters",
        "Mark drafts 'not for publication' until the press office clears them.",
        "| Site | Gate code | Key safe |\n|---|---|---|\n| Elm House | (ask the manager) | yes |",
        "Title\tUsername\tPassword\nKiosk\tkioskadm\t********",
        "Field,Type,Notes\npassword,string,min 14 chars\npin,int,4 digits",
    ],
)
def test_talk_of_passwords_codes_and_patching_stays_official(text):
    assert not classify_text(text).local_only, classify_text(text).signals


@pytest.mark.parametrize(
    ("text", "signal"),
    [
        ("[00:00:04] Claire: Okay, before we start, reminder this call is at SECRET so cameras off", "marking_secret"),
        ("The paragraph below is lifted from a document marked SECRET. Reword it:", "marking_secret"),
        (
            "can you tidy up the grammar in this, it's official-sensitive:\n\nthe review found",
            "marking_official_sensitive",
        ),
        ("hiya can u make this read better, its OS so keep it in here", "marking_official_sensitive"),
        (
            "https://x.sharepoint.com/sites/ExCo/Shared%20Documents/OFFICIAL-SENSITIVE/paper.docx",
            "marking_official_sensitive",
        ),
        (
            "CDOP notes: Oliwia Pawlak, aged 3, died at home on 18/12/23. Post-mortem inconclusive.",
            "justice_context_named_person",
        ),
        ("fyi Adaeze Okoro in finance is off again, her OH report says depression", "justice_context_named_person"),
    ],
)
def test_set_20s_categories(text, signal):
    assert signal in {s.type for s in classify_text(text).signals}


@pytest.mark.parametrize(
    "text",
    [
        "If a file is sensitive, it's OFFICIAL-SENSITIVE and must be stored securely",
        "Płatność przelewem na rachunek firmowy PL15 1050 1445 2610 2724 0083 5956 w terminie 14 dni. Faktura VAT",
        "Jury Central Summoning Bureau\nPhoenix House\nRushton Avenue\nBradford BD3 7BH\n\nDear juror,",
        "Kind regards,\r\nProbate Team\r\nHartley & Crane LLP\r\nprobate@hartleycrane.co.uk",
        "Subject: RE: SKU A4471KT - toner order (printer room 2)",
    ],
)
def test_set_20s_benign_twins(text):
    assert classify_text(text).level == Level.OFFICIAL


def test_a_given_name_romanised_with_a_hyphen_and_the_name_in_its_own_script_before_an_age():
    text = "need an appropriate adult urgently: WONG Siu-ming (黃少明), 16, arrested at the Arndale for shop theft"
    assert "justice_context_named_person" in {s.type for s in classify_text(text).signals}


def test_name_fields_typed_without_a_colon_across_two_messages_and_who_runs_a_session():
    turns = [("user", "victim first name Roxana"), ("user", "surname Munteanu, she is 29, Romanian")]
    body = {"model": "m", "messages": [{"role": role, "content": text} for role, text in turns]}
    assert "justice_context_named_person" in {s.type for s in classify_request(body).signals}
    text = "Safeguarding adults training (s.42 enquiries) delivered by Joanne Whitfield on Tuesday, room 4."
    assert classify_text(text).level == Level.OFFICIAL


@pytest.mark.parametrize(
    "text",
    [
        '@pytest.mark.parametrize("value", ["943 476 5919", "9990000018"])\ndef test_known_numbers(value):',
        '# SYNTHETIC TEST DATA, NOT A REAL PERSON\n{"nhs_number": "9990000018", "prison_number": "A1234BC"}',
    ],
)
def test_the_formats_examples_in_a_test_or_a_synthetic_fixture_are_not(text):
    assert classify_text(text).level == Level.OFFICIAL


def test_the_nhs_example_number_in_a_referral_still_counts():
    assert "nhs_number" in {s.type for s in classify_text("Referral for J. Smith, NHS no 943 476 5919").signals}


def test_a_rotas_day_lines_and_a_speakers_list_are_colleagues():
    rota = "Duty rota - Crown Court at Leeds ushers\nMon: Amanda Sykes, Joel Barker\nTue: Joel Barker, Farah Qureshi"
    assert classify_text(rota).level == Level.OFFICIAL
    log = "Wing log, remand prisoners\nMon: Amanda Sykes assaulted an officer on B wing"
    assert classify_text(log).level == Level.OFFICIAL_SENSITIVE


def test_more_job_titles_make_a_colleague_unless_an_hr_case_is_about_them():
    text = "The safeguarding referral workshop will be run on Tuesday.\nSarah Jones, HR Business Partner"
    assert classify_text(text).level == Level.OFFICIAL
    case = "Sarah Jones, Staff Nurse, is suspended pending a misconduct investigation into missing controlled drugs."
    assert classify_text(case).level == Level.OFFICIAL_SENSITIVE
