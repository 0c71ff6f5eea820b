"""Shapes found by the red-team sets of the sixth and seventh rounds (documents_22-23 and 27-28, benchmarks/redteam/):
encodings a mail's source carries, digits and dashes as other scripts and typists write them, the records of health,
personnel and intelligence work, and names as Polish, Chinese and Vietnamese write them. Each test names the rule it
pins."""

from __future__ import annotations

import quopri

import pytest

from routing import normalize
from routing.classify import classify_text
from routing.levels import Level

PERSON = "justice_context_named_person"


def signals(text: str) -> set[str]:
    return {s.type for s in classify_text(text).signals}


# --- encodings and characters -------------------------------------------------------------------------------


@pytest.mark.parametrize("zero", ["\u0660", "\u06f0", "\u0966", "\u09e6"])
def test_digits_of_other_scripts_read_as_the_number_they_write(zero):
    digits = "".join(chr(ord(zero) + int(c)) if c.isdigit() else c for c in "NHS no. 943 476 5919")
    assert "nhs_number" in signals(f"Referral for the patient, {digits}, seen on Monday.")


@pytest.mark.parametrize("banner", ["OFFICIAL--SENSITIVE", "OFFICIAL -- SENSITIVE", "OFFICIAL---SENSITIVE"])
def test_a_dash_typed_as_hyphens_inside_a_marking(banner):
    assert classify_text(f"{banner}\n\nMinutes of the estates board").level == Level.OFFICIAL_SENSITIVE


def test_quoted_printable_without_its_header_is_read_as_well():
    body = "Dear team,\r\nthe referral for the patient gives NHS no. 943 476 5919 \u2013 please book her in.\r\n"
    encoded = quopri.encodestring(body.encode(), quotetabs=False).decode()
    encoded = encoded.replace("5919", "59=\r\n19")  # a soft break inside the number, as a 76-column wrap makes
    assert "quoted-printable" not in encoded.lower()
    assert "nhs_number" in signals(encoded)
    html = '<meta name=3D"classification" content=3D"OFFICIAL-SENSITIVE">\r\n<p>Estates plan</p>'
    assert classify_text(html).level == Level.OFFICIAL_SENSITIVE


def test_a_base64_part_is_not_mangled_by_the_quoted_printable_reading():
    import base64

    encoded = base64.b64encode(b"OFFICIAL-SENSITIVE\r\n\r\nHMP regime change notice").decode()
    part = "Content-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n" + encoded + "\r\n"
    assert part.rstrip().endswith("=")  # padding at a line's end: also a quoted-printable soft break's shape
    assert classify_text(part).level == Level.OFFICIAL_SENSITIVE


@pytest.mark.parametrize(
    "subject",
    [
        "=?utf-8?Q?OFFICIAL=E2=80=91SENSITIVE_=E2=80=93_board_minutes?=",
        "=?UTF-8?B?T0ZGSUNJQUwtU0VOU0lUSVZFIC0gYm9hcmQgbWludXRlcw==?=",
        "=?iso-8859-1?q?SECRET_=E9t=E9_plan?=",
        "=?x-unknown-charset?Q?SECRET_plan?=",
        "=?idna?Q?SECRET_plan?=",  # a codec that raises whatever the error handler: read as UTF-8, no error
    ],
)
def test_a_mail_headers_encoded_words_are_decoded(subject):
    result = classify_text(f"From: registry@example.gov.uk\nSubject: {subject}\n\nSee attached.")
    assert result.level > Level.OFFICIAL
    assert "classification_error" not in {s.type for s in result.signals}


def test_encoded_words_are_decoded_a_bounded_number_of_times():
    word = "=?utf-8?Q?x?= "
    data = (word * (normalize._MAX_ENCODED_WORDS + 10)).encode()
    decoded = normalize._decode_encoded_words(data)
    assert decoded.count(b"=?utf-8?Q?x?=") == 10  # the rest left as they were


def test_a_password_escaped_by_quoted_printable_is_still_a_placeholder():
    assert classify_text("DB_HOST=3Ddb.internal\nDB_PASSWORD=3D${DB_PASSWORD}\n").level == Level.OFFICIAL
    assert "credential" in signals("DB_PASSWORD=3DWinter2024!x9\n")


# --- the records of health, personnel and intelligence work ------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "DATIX W-88120\nAt 04:10 Mr Desmond Achterberg (79, bay 2) was found on the floor beside his bed; X-ray shows a"
        " fractured wrist. Daughter informed.",
        "Handover: Callum Rennick on D1 is on day 2 of his detox, shaking, medication as charted.",
        "Vetting decision: clearance refused for Priyanka Deshmukh (applicant, EO) - undisclosed county court"
        " judgments and an IVA.",
        "INT LOG 25/118 - Jordan MACKIE believed to be running a county line from Croydon into Hastings.",
        "Please write to Mrs Ilinca Moraru about her son Stefan, who was beaten by two men and taken to hospital.",
        "Grievance note: Lowri Tregaron says a colleague has been sending inappropriate messages since the team day.",
    ],
)
def test_a_person_named_in_a_health_personnel_or_intelligence_record(text):
    assert PERSON in signals(text), text


@pytest.mark.parametrize(
    "text",
    [
        "OCCUPATIONAL HEALTH - SERVICE UPDATE\nOur clinical lead, Hodan Warsame, will run two drop-ins on the new"
        " referral portal.",
        "Falls prevention week: Gemma Rutherford (Falls Lead) will visit each ward with the new posters.",
        "The Datix module training was developed by Laura Pennington and is on the learning hub.",
    ],
)
def test_staff_running_a_health_service_are_not(text):
    assert classify_text(text).level == Level.OFFICIAL, text


def test_an_employee_named_with_a_role_field_is_a_case_when_their_health_is_the_subject():
    referral = (
        "OCCUPATIONAL HEALTH REFERRAL\nEmployee: Tamsin Oduya   Role: Custody Officer   Manager: Gavin Price\n"
        "Reason: 40 days' absence since March (anxiety and depression); she has disclosed domestic abuse at home."
    )
    assert PERSON in signals(referral)


# --- colleagues by grade, role and what they did ------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "DETAIL - MONDAY\nA WING: SO Okafor (i/c), Off Blakemore, OSG Nakamura\nVISITS: Off Pritchard\nSwaps via the"
        " detail office. Segregation unit cover: CM Wieczorek.",
        "marac_date,agency,representative,role\n2025-02-03,IDVA service,Amara Boateng,Senior IDVA\n",
        "Team meeting: Ionela Ciobanu (PSO) presented the new curfew reminder texts.",
        "Youth court sitting rota: Chair JP Rachel Oyelaran, legal adviser to follow; usher cover Usher Dean Moss.",
        "Induction quiz: which prison does Andy Dufresne escape from, and what is Jean Valjean's prisoner number?",
    ],
)
def test_colleagues_by_grade_role_acronym_and_quizzes_on_fiction_are_not_cases(text):
    assert PERSON not in signals(text), text


def test_an_officer_in_an_incident_is_still_a_person_in_it():
    text = "Officer Dean Moss was punched by a prisoner on the landing during unlock; taken to hospital."
    assert PERSON in signals(text)


# --- names as other languages and records write them -------------------------------------------------------


def test_polish_declines_names_and_both_words_are_read_back_to_the_list():
    letter = "piszę w sprawie mojego syna, Bartosza Kowalczyka, który jest w więzieniu HMP Bedford."
    assert PERSON in signals(letter)


@pytest.mark.parametrize(
    "text",
    [
        "CHEN, Xiao Ming - overstayer, referred to the NRM after the enforcement visit.",
        "Wang Zihan was remanded in custody at the youth court this morning.",
        "NGUYEN Van Hung, found at a cannabis farm, referred as a potential victim of trafficking.",
    ],
)
def test_chinese_and_vietnamese_names_family_name_first(text):
    assert PERSON in signals(text), text


def test_family_names_that_are_english_words_do_not_make_names():
    assert classify_text("The Long Island court visit was sentenced to be rescheduled.").level == Level.OFFICIAL


def test_a_lower_case_given_name_that_chat_asks_to_chase():
    assert PERSON in signals("can u chase tomasz re his licence recall pls")
    assert classify_text("can u chase the printer re the licence recall forms").level == Level.OFFICIAL


def test_a_title_and_an_initial_with_the_cell():
    assert PERSON in signals("Mr K (C2-14) found with a ligature by night patrol; ACCT opened.")
    assert classify_text("Ms C said the hearing bundle was late.").level == Level.OFFICIAL


# --- organisations' details, examples and talk about the scheme ---------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "Brightmoor Facilities Ltd, company no. 08813352, VAT reg no. GB 167 9649 03.\nRemittances to: Sort code"
        " 40-11-62, account 71022845.",
        "How to pay your fine by bank transfer\nAccount name: HMCTS Fines Receipts\nBank: Government Banking Service\n"
        "Sort code: 08-33-00\nAccount number: 12001020",
        "Family Day at Walkley Primary School, Burnaby Crescent, Sheffield S6 2RL, 10am to 12pm.",
        "Assisted Prison Visits Unit, PO Box 2152, Birmingham B15 1SD",
        "can u check if the training room at LS11 5DR is free on 14/02",
        '{"prisonId": "LPI", "prisonName": "HMP Liverpool", "active": true, "types": [{"code": "HMP"}],'
        ' "operationalCapacity": 700, "addresses": [{"addressLine1": "68 Hornby Road", "town": "Liverpool",'
        ' "postcode": "L9 3DF"}]}',
        "Thank you for your order!\nOrder number: 4194814061\nDelivery to: Facilities, HMP Low Fell",
        "E-bost: assisted.prison.visits@justice.gov.uk",
    ],
)
def test_an_organisations_account_address_order_or_mailbox_is_no_ones(text):
    assert classify_text(text).level == Level.OFFICIAL, text


def test_a_refund_to_a_person_on_an_invoice_page_is_still_theirs():
    text = "Invoice 2291 credit note: refund to Mrs Ilinca Moraru, sort code 40-11-62, account 71022845."
    assert "sort_code_account" in signals(text)


def test_markings_listed_as_a_guides_examples_and_markings_of_the_text_in_hand():
    guide = "3.1 Markings go at the top and bottom of every page, for\nexample:\n\n      OFFICIAL-SENSITIVE\n"
    guide += "      OFFICIAL-SENSITIVE COMMERCIAL\n\n3.2 Handling instructions may follow."
    assert classify_text(guide).level == Level.OFFICIAL
    assert classify_text("fyi the brief below is OS - pls dont fwd outside the team").level > Level.OFFICIAL
    pasted = "ok pasting the gold group notes below - it's marked Official Sensitive LOCSEN so keep it here"
    assert classify_text(pasted).level > Level.OFFICIAL
    rule = "If the notes below are marked Official Sensitive, keep them off Teams."
    assert classify_text(rule).level == Level.OFFICIAL


def test_a_staff_table_by_shift_and_a_case_table_by_cell():
    staff = "Surname\tForename\tWing\tShift\tRole\nMURPHY\tDeclan\tB\tEarly\tSO\nKOVAC\tMarek\tC\tLate\tSO\n"
    assert classify_text(staff).level == Level.OFFICIAL
    case = "surname,forename,cell,date_in,reason\nMcALLISTER,Callum,CSU-03,2024-03-01,own protection - debt\n"
    assert PERSON in signals(case)


@pytest.mark.parametrize(
    "text",
    [
        "[MARAC case 7]\nChair: Next case, referred by police. Victim is Leanne Howarth, 29, her partner Jordan Platt.",
        "heads up kasia is still off with stress, 6 wks now, HR want an attendance hearing",
        "Kasia (Nowak) due out 14/05; NFA, ex-partner is a DA perpetrator so she can't return there.",
        "Mr Ebenezer Quaye in healthcare meets the criteria for transfer under s.48; keep him on constant obs.",
        "seen Marek Zawadzki today, admitted hes been hitting his gf again when she wont give him money",
    ],
)
def test_people_in_a_transcript_a_chat_and_a_note(text):
    assert PERSON in signals(text), text


def test_a_programme_review_and_a_published_leaflet_in_another_script():
    review = "TV review: 'The Long Licence', episode 3. Probation officer Kate Mercer (played by Helen Brannock)"
    review += " confronts parolee Danny Cole."
    assert classify_text(review).level == Level.OFFICIAL
    leaflet = "قانون الضحايا – حقوقك. يمكنك طلب مترجم مجانًا.\nArabic summary. Published by the Ministry of Justice."
    assert classify_text(leaflet).level == Level.OFFICIAL


@pytest.mark.parametrize(
    "text",
    [
        "Family Day at the visitors' centre. Book a place on 0114 255 0112 or email the team.",
        "Fostering information evenings: call 01443 425 006 (Mon-Fri 9am-5pm).",
        "@channel nDelius release D482913 went to preprod last night, pls smoke test the OASys handoff screen",
        "# SYNTHETIC TEST DATA - no real patients\nnhs_number,dob,sex\n9991998772,2000-01-01,F\n",
    ],
)
def test_a_services_line_a_release_number_and_a_synthetic_table(text):
    assert classify_text(text).level == Level.OFFICIAL, text


def test_a_private_landline_and_a_crn_stay_personal():
    assert "uk_phone" in signals("His landline is 01443 425 006 and he was bailed to that address.")
    assert "probation_crn" in signals("CRN D482913 missed his probation appointment again.")


def test_latin_text_with_look_alike_letters_is_not_another_script():
    dressed = "Рrоѕzę przetłumасzyć: doѕtаwа роśсіеlі do HМР Stуal opóźni sіę о tydzień, kiеrownik sprzеdażу."
    assert "unscanned_script" not in signals(dressed)
    assert "unscanned_script" in signals("Привет, как дела? Меня зовут Иван, я живу в Лондоне.")


@pytest.mark.parametrize(
    "text",
    [
        '{"note": "dostawa do HMP Styal, Agnieszka Zieli\\u0144ska, kierownik sprzeda\\u017cy"}',
        "dostawa do HMP Styal, Agnieszka Zieli=\n=C5=84ska, kierownik sprzeda=C5=BCy",
    ],
)
def test_a_name_cut_short_by_an_escaped_letter_is_read_whole_elsewhere(text):
    assert PERSON not in signals(text), text


@pytest.mark.parametrize(
    "text",
    [
        "YOUTH COURT SITTING ROTA\nChair: JP Rachel Oyelaran\nLegal adviser: Conor Quigley\nUsher: Marie",
        "marac_date,agency,representative,role\n2024-04-11,Police,DS Nia Hughes,Chair\n"
        "2024-04-11,IDVA service,Amara Osei,Senior IDVA\n",
        "Winner: Officer Ryan Whitaker, HMP Thornbury Fen. Ryan's football league cut violence on E wing by a third."
        " Congratulations Ryan!",
        "Great news - Nkechi Eze has accepted the Senior Policy Adviser post and will lead on sentencing data.",
        "Today the reformer's name lives on in the Elizabeth Fry approved premises in Reading and in Fry Road.",
        "CUSTODY STAFFING, early turn\nSgt WRÓBEL, Agnieszka\nDDO HUGHES, Nia\nFire drill Wednesday.",
    ],
)
def test_staff_by_a_job_label_appointments_congratulations_and_places_named_after_people(text):
    assert PERSON not in signals(text), text


def test_a_colleague_in_a_police_matter_is_still_a_case_and_a_home_phone_is_personal():
    assert PERSON in signals("Our usher Dean Moss was reported to the police for an assault in the car park.")
    letter = "Clive House\n70 Petty France\nLondon SW1H 9EX\n\nVictim liaison: Sinéad Byrne's home phone: 0113 372 5300"
    assert "uk_phone" in signals(letter)
    assert PERSON in signals("Part B done for Liam O'Connell-Hughes: he failed to return to the AP on Saturday night.")


# --- seventh round ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "Tomasz breached his curfew again last night, EM data shows out till 2am.",
        "night log: kasia relapsed on the unit, tested positive for spice at 22:10, duty governor told",
        "Wiktor was recalled to custody on Friday after the police visit.",
        "Update for the MAPPA meeting: Callum absconded from the approved premises on Sunday.",
    ],
)
def test_a_given_name_alone_with_what_only_a_case_says_of_a_person(text):
    """A listed given name, no surname, followed by what can only be said of a person's case (not "was charged",
    "failed to attend": a colleague's day has those too)."""
    assert PERSON in signals(text)


@pytest.mark.parametrize(
    "text",
    [
        "Sarah failed to attend the meeting about curfew policy; minutes to follow.",
        "Tomasz was charged \u00a340 for parking at the prison car park and wants it refunded.",
        "Summer was recalled as the best season for the visits hall garden project.",
    ],
)
def test_a_colleague_s_day_beside_case_words_is_not_a_case(text):
    assert PERSON not in signals(text)


def test_a_short_sentence_in_han_is_another_script_but_a_glossed_term_is_not():
    """One Han character writes a syllable or a word: nine of them and a prison's name are a sentence the rules cannot
    read; two in an English gloss are not."""
    assert "unscanned_script" in signals(
        "\u6211\u7684\u513f\u5b50\u5f20\u4f1f\u88ab\u5173\u5728HMP Lewes\u76d1\u72f1\u3002"
    )
    assert classify_text("In the glossary, \u76d1\u72f1 means prison.").level == Level.OFFICIAL


@pytest.mark.parametrize(
    "text",
    [
        '{"title": "Office move", "gsc": "OS", "body": "Teams move to floor 3."}',
        '{"metadata": {"securityClassification": "OFFICIAL_SENSITIVE", "owner": "Directorate Office"}}',
        '{"labels": [{"name": "sensitivity", "value": "Official Sensitive"}], "body": "FOI draft"}',
        '{\n  "labels": [\n    {\n      "name": "sensitivity",\n      "value": "Official Sensitive"\n    }\n  ]\n}',
        '{\n    "Tags": [\n        {\n            "Key": "Classification",\n'
        '            "Value": "SECRET"\n        }\n    ]\n}',
        "metadata:\n  labels:\n    - name: sensitivity\n      value: Official Sensitive\n  owner: policy\n",
        "2025-03-04T09:31:09Z WARN dms.audit action=RELABEL doc=EDRM/883102 from=OFFICIAL to=OFFICIAL-SENSITIVE",
        "Contents\n1. Purpose\n\n1                                  OFFICIAL-SENSITIVE\n\fPurpose: lease events.",
        "Sheet: Summary\nA1: OFFICIAL-SENSITIVE\nA3: Site\tB3: Lease end",
        "# estates-model\n\n> **OFFICIAL-SENSITIVE** \u2013 do not make this repository public.\n\nRun it with make.",
        "IN CONFIDENCE\n\nDear Clerk,\n\nThe Department is minded to amalgamate the two divisions.",
        "Just a reminder that item three is official sensitive, so please don't screenshot the slides.",
        "na - mae hwn yn SWYDDOGOL-SENSITIF, paid \u00e2'i anfon ymlaen plis",
        "OS - pls don't fwd. ExCo moved to 3pm, estates paper now says 3 sites not 4.",
        "os - commercial. pls dont share outside the bid team\n\nbidder B top on quality",
        "this one's o/s - don't forward. can u sense check the payback maths",
        "no - it's o/s commercial, keep it in the bid team",
        "Subject: OS: Estates maintenance backlog - Q3 update\r\n\r\nAll,",
        "Xiu - re-sending this as OS, I forgot to mark it first time.",
    ],
)
def test_markings_where_systems_and_staff_put_them(text):
    """Classification fields under other names and shapes (the scheme's initials, an enum's underscore, a name and
    value pair on one line or on two, a log's key=value), page furniture before a banner, emphasis after one, the old
    privacy marking, a numbered item or a Welsh sentence said to be marked, and the abbreviation with what to do with
    the text."""
    assert classify_text(text).level >= Level.OFFICIAL_SENSITIVE, text


@pytest.mark.parametrize(
    "text",
    [
        "Subject: OS: Windows 11 rollout for the Leeds office",
        "the invoice is o/s, can you chase the supplier",
        "She told me in confidence that she was leaving.",
        "Use <strong>OFFICIAL-SENSITIVE</strong> sparingly, e.g. <em>OFFICIAL-SENSITIVE PERSONAL</em>.",
        'Example header: "SWYDDOGOL-SENSITIF / OFFICIAL-SENSITIVE"',
        '<xs:enumeration value="OFFICIAL"/>\n<xs:enumeration value="OFFICIAL-SENSITIVE"/>\n'
        '<xs:enumeration value="SECRET"/>',
        "Which OS - Windows or Linux - should the kiosk run?",
        "labels:\n  - name: sensitivity\n    value: OFFICIAL\n",
        '{\n  "fields": [\n    {\n      "name": "classification",\n      "values": [\n        "OFFICIAL",\n'
        '        "OFFICIAL-SENSITIVE",\n        "SECRET"\n      ]\n    }\n  ]\n}',
    ],
)
def test_the_same_words_that_mark_nothing(text):
    assert classify_text(text).level == Level.OFFICIAL, text


@pytest.mark.parametrize(
    "text",
    [
        "I've been appointed investigating officer for the case concerning Rachel Hughes. The allegations are misuse"
        " of the corporate card. Rachel is currently suspended on full pay.",
        "cafcass report for the Campbell case is in. Recommends Neil (7) lives with dad, supervised contact for now.",
        "Pani Megan Jenkins (pokrzywdzona) zadzwoni\u0142a. Boi si\u0119 spotka\u0107 oskar\u017conego w s\u0105dzie.",
        "can u remind me what the VLO said about Nicole Barraclough's kids - is her ex still barred from the school",
        "Dear Mrs Achterberg,\n\nThank you for your letter of 4 March about your son, Jordan, who is held on Houseblock"
        " 2.\n\nI am sorry to hear that Jordan was not able to call you on his birthday. I have looked into this and"
        " understand that his phone credit was stopped after the telephone account was reviewed on 27 February, which"
        " was later than it should have been, and I apologise for that. Jordan's credit was stopped after an"
        " adjudication in which he was found guilty of possessing a mobile phone.",
    ],
)
def test_people_named_by_their_relatives_their_case_and_their_family_court(text):
    assert PERSON in signals(text), text


@pytest.mark.parametrize(
    "text",
    [
        "reminder Siobhan Reilly is presenting the new VLO training module at the all-hands today",
        "We have appointed Mrs Beverley Osei as our new pharmacy technician at HMP Channings Wood; she will complete"
        " vetting and key training in her first week.",
        "| Role | Name |\n|---|---|\n| Minute taker | Rory Gill |\n| Social worker | Chris Hale |\n\nchild protection"
        " conference invite: turn into bullets",
        "Court list interpreting, Leicester Magistrates' Court\nInterpreter: Ms J. Lewandowska (NRPSI 11022)",
        "Number: CHG1462575\nOpened by: Aoife Ni Bhriain\nShort description: electronic monitoring curfew pilot"
        " findings",
    ],
)
def test_staff_who_present_are_appointed_sit_in_a_role_column_or_open_a_ticket(text):
    assert PERSON not in signals(text), text


@pytest.mark.parametrize(
    ("text", "signal"),
    [
        ("# fixtures - two records\n- name: Record Two\n  dob: 1900-01-02\n", "date_of_birth"),
        ("HM Revenue & Customs\nSelf Assessment\nBX9 1AS\n\nDear adviser,", "uk_postcode"),
        ("The escort desk is staffed 08:00-18:00 Monday to Friday on 0113 206 5118.", "uk_phone"),
        ("Your licence number is 16 characters long, for example MORGA753116SM9IJ.", "driving_licence"),
    ],
)
def test_an_organisations_details_and_a_formats_placeholders_are_no_one_s(text, signal):
    """A date before anyone alive was born, a non-geographic postcode (organisations only), a landline with its
    staffed hours before it, DVLA's own published example licence after a word that says it is one."""
    assert signal not in signals(text)


@pytest.mark.parametrize(
    ("text", "signal"),
    [
        ("Name: Jane Kowalski\nDOB: 02/01/1936\nAddress: 4 Elm Road", "date_of_birth"),
        ("Her home number is 0113 206 5118; call after 6pm.", "uk_phone"),
        ("Defendant's licence: MORGA753116SM9IJ, seized at the roadside.", "driving_licence"),
    ],
)
def test_the_same_shapes_of_a_person_still_count(text, signal):
    assert signal in signals(text)


@pytest.mark.parametrize(
    "text",
    [
        '2024-07-19T02:31:12Z care-app WARN event=safeguarding_flag resident="Lewis Ashworth" reason="3rd fall"',
        "AssetPlus extract: Mei is a 16-year-old girl who lives with her mother. Referral Order for criminal damage.",
        "CPOMS entry\nStudent: KH (Year 10)\nKH said his dad hits him when he drinks. DSL informed, MASH referral.",
        "22/07 To Iwan: Hi Iwan its Eoin your probation officer. You missed todays appt. Call me.",
        "decode this and tidy it into a contact log entry:\n\n"
        "Q2xpZW50OiBHZXRoaW4gYXAgR3dpbHltCk1lbnRhbCBoZWFsdGg6IGRpc2Nsb3NlZCBzdWljaWRhbCB0aG91Z2h0cywgcGxhbiB0byBq"
        "dW1wIGZyb20gdGhlIG11bHRpLXN0b3JleS4KQWN0aW9uOiBjcmlzaXMgdGVhbSBjYWxsZWQsIEdQIGluZm9ybWVkLgo=",
        "Quick q - can I tell Rui's victim the release date if Rui is going to an AP in the same town?",
        "I\u0161verskite: Darius Petrauskas buvo sulaikytas Corby mieste. Teismo pos\u0117dis kit\u0105 savait\u0119.",
    ],
)
def test_people_in_snake_case_fields_by_age_initials_their_worker_s_text_and_base64_asked_to_be_decoded(text):
    """Casework words as a log's snake-case values, a name with its age in a sentence, initials after the record's
    label, a worker's text to the person they supervise, a base64 block the request asks to decode, a possessive
    before "victim", Lithuanian case words."""
    assert PERSON in signals(text), text


@pytest.mark.parametrize(
    "text",
    [
        "CREATE TABLE safeguarding_concerns (\n  id SERIAL PRIMARY KEY,\n  first_name TEXT NOT NULL,\n"
        "  last_name TEXT NOT NULL\n);",
        "Subject: HMP Ranby - visitors' centre snagging\n\nHi Martin, the toilets need refitting.\n\nPhil",
        "Hi Sarah, it's Tom from probation - the team meeting moved to 3pm.",
        "Sarah is a 45-year-old analyst who joined the team in March.",
    ],
)
def test_a_schema_a_subject_line_a_colleague_s_message_and_a_colleague_s_age(text):
    assert PERSON not in signals(text), text


def test_lower_case_os_with_a_handling_instruction():
    assert "marking_official_sensitive" in signals("this is os so dont forward but the gov wants the plan redone")
    assert classify_text("this is os x compatible so dont forward the old one").level == Level.OFFICIAL


@pytest.mark.parametrize(
    "text",
    [
        "COMP 1 - Complaint form\n\nName: Bilal Patel          Wing: A3\n\nWhat is your complaint about?\nOn 08/01"
        " I asked for my phone credit and was taken to the floor. My wrist is still swollen and I have not been"
        " seen. I have asked for the footage to be kept and I want the complaint passed to the IMB.",
        "Hi Greta, update on Ana Pereira - moved to the healthcare unit last night after swallowing batteries."
        " Can you check the ACCT is reviewed today?",
        "Mrs Zielinska presented at the front desk with two children (aged 4 and 11). She says she has been"
        " sleeping at a friend's since last week and cannot stay there beyond the weekend. She fled her partner's"
        " home after he threatened her with a knife.",
    ],
)
def test_a_record_s_name_field_prison_self_harm_and_violence_at_home(text):
    """A form's name field read with the case a paragraph later; ACCT in capitals; what a violent partner did."""
    assert PERSON in signals(text), text


@pytest.mark.parametrize(
    "text",
    [
        "Field      Type      Format\nSORT_CODE  CHAR(6)   000000\nACCT_NO    CHAR(8)   00000000",
        "TRAINING EXERCISE - FICTIONAL DATA ONLY\nName: Joe Bloggs   DOB: 01/01/1980\nOffence (fictional): theft\n"
        "Task: learners should say which fields count as personal data under UK GDPR and which are special"
        " category or criminal offence data, and write the model answer for the trainer to mark.",
    ],
)
def test_an_account_column_and_a_marked_exercise_s_record(text):
    assert PERSON not in signals(text), text


@pytest.mark.parametrize(
    "text",
    [
        "INSERT INTO safeguarding_concerns (first_name, last_name, age, concern)\nVALUES\n"
        "  ('Stacey', 'Ashworth', 12, 'parent drug use, home conditions poor');",
        "translate: mera naam Priya hai, Gurpreet Chaudhry ki biwi. Mere shohar ko Friday police le gayi.",
        "Walaalkay Liban Abdi waxaa lagu hayaa xarunta Harmondsworth muddo 2 bilood ah.",
    ],
)
def test_names_as_a_rows_quoted_fields_and_detention_as_families_write_it(text):
    assert PERSON in signals(text), text


def test_a_resident_by_surname_and_room_and_staff_by_the_labels_of_their_work():
    log = (
        "AP daily occurrence book - 18/08\n15:10  Okafor (Rm 7) signed out for job centre appt.\n20:30  Not"
        " returned by curfew 19:00, police informed as per breach protocol."
    )
    assert PERSON in signals(log)
    for text in (
        "Housing Options - quarterly summary\nHouseholds citing domestic abuse: 19%. Refuge referrals: 65.\n"
        "Report prepared by: Marcia Grant",
        "AP occurrence book\n10:47  Curfew check: all residents in by 19:00.\nStaff on duty: Andrei Popescu",
        "Rule 35 reports submitted: 33. The team welcomed Attila Horvath, who joined from the Heathrow site.",
    ):
        assert PERSON not in signals(text), text
