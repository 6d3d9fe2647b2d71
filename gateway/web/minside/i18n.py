"""What Min side says, in bokmål (the default), English and nynorsk: one dict per language.

Every text is plain: the templates escape it, so no catalogue entry carries markup. A key missing
from a catalogue falls back to bokmål (the tests check that none is missing). Times are shown in
Europe/Oslo, to the minute: ``2. desember 2026 kl. 14:05`` (nb, nn), ``2 December 2026, 14:05`` (en).
"""

from __future__ import annotations

from datetime import date, datetime

from gateway.register.settings import OSLO

LANGUAGES = ("nb", "en", "nn")
DEFAULT = "nb"
# Accept-Language primary tags and the catalogue each means ("no" is Norwegian, written bokmål).
_TAGS = {"nb": "nb", "no": "nb", "nn": "nn", "en": "en"}

NB: dict[str, str] = {
    # ------------------------------------------------------------------ frame
    "site.name": "Nasjonalt lånerregister",
    "site.page": "Min side",
    "skip": "Hopp til hovedinnholdet",
    "nav.label": "Min side",
    "nav.overview": "Oversikt",
    "nav.trail": "Innsyn",
    "nav.home": "Hjemmebibliotek",
    "nav.pin": "PIN-kode",
    "nav.about": "Om registeret",
    "nav.login": "Logg inn",
    "logout": "Logg ut",
    "logged_in_as": "Logget inn som {name}",
    "lang.label": "Språk",
    "footer.responsible": "Nasjonalbiblioteket er ansvarlig for Nasjonalt lånerregister.",
    "footer.about": "Om registeret og personvern",
    "footer.a11y": "Tilgjengelighetserklæring",
    "footer.loans": "Registeret lagrer ingenting om hva du låner.",
    "error.summary": "Dette må du rette",
    "error.prefix": "Feil:",
    "notice.done": "Utført",
    "none": "Ikke registrert",
    "dash": "–",
    # ------------------------------------------------------------------ log in
    "login.title": "Logg inn på Min side",
    "login.intro": "Logg inn med lånenummeret og PIN-koden din for å se hva som er lagret om deg i "
                   "Nasjonalt lånerregister, og hvem som har sett på det.",
    "login.card": "Lånenummer",
    "login.card_hint": "Står på lånekortet ditt, for eksempel N000100001.",
    "login.pin": "PIN-kode",
    "login.pin_hint": "Har du ikke PIN-kode? Du får en på biblioteket ditt.",
    "login.submit": "Logg inn",
    "login.failed": "Feil lånenummer eller PIN-kode",
    "login.throttled": "For mange mislykkede innlogginger fra nettverket ditt. Vent noen minutter og prøv igjen.",
    "login.stale": "Skjemaet var utløpt. Prøv igjen.",
    "login.logged_out": "Du er logget ut.",
    "login.expired": "Du var logget ut, fordi økten var avsluttet. Logg inn igjen.",
    # ------------------------------------------------------------------ overview
    "overview.title": "Dette er lagret om deg",
    "overview.person": "Personopplysninger",
    "overview.blocked": "Lånekortet ditt er sperret. Ta kontakt med et av bibliotekene dine.",
    "overview.block_reason": "Årsak: {reason}",
    "overview.cards": "Lånekort",
    "overview.cards_caption": "Lånekortene dine, nåværende og tidligere",
    "overview.libraries": "Bibliotekene dine",
    "overview.libraries_caption": "Bibliotek der lånekortet ditt er aktivert",
    "overview.no_libraries": "Lånekortet ditt er ikke aktivert ved noe bibliotek.",
    "overview.download_h": "Last ned en kopi",
    "overview.download": "Last ned alt som er lagret om deg (JSON)",
    "overview.download_note": "En kopi i et vanlig maskinlesbart format, med loggen over oppslag og endringer.",
    "overview.change_note": "Er noe feil? Et av bibliotekene dine retter det. Du kan selv bytte hjemmebibliotek "
                            "og PIN-kode.",
    "export.note": "Registeret lagrer ingenting om lån, reserveringer eller gebyrer.",
    "export.address_note": "Det er registrert en adresse på deg, og den er skjult. Den vises ikke her. Du kan se den "
                           "ved å møte opp på et av bibliotekene dine med legitimasjon.",
    "f.name": "Navn",
    "f.card": "Lånenummer",
    "f.home": "Hjemmebibliotek",
    "f.birth_date": "Fødselsdato",
    "f.national_id": "Fødselsnummer",
    "f.national_id_note": "De fem siste sifrene vises ikke her.",
    "f.gender": "Kjønn",
    "f.address": "Adresse",
    "f.temp_address": "Midlertidig adresse",
    "f.temp_until": "til og med {date}",
    "f.secret_address": "Det er registrert en adresse på deg, men den er skjult. Du kan se den ved å møte opp "
                        "på et av bibliotekene dine med legitimasjon.",
    "f.phone": "Telefon",
    "f.email": "E-post",
    "f.contact": "Foretrukket kontaktmåte",
    "f.pin": "PIN-kode",
    "f.registered": "Registrert",
    "f.updated": "Sist endret",
    "pin.is_set": "Du har PIN-kode.",
    "pin.not_set": "Du har ikke PIN-kode.",
    "pin.locked_until": "Sperret til {time} etter for mange feil forsøk.",
    "gender.M": "Mann",
    "gender.F": "Kvinne",
    "gender.X": "Annet",
    "contact.email": "E-post",
    "contact.sms": "SMS",
    "contact.phone": "Telefon",
    "contact.letter": "Brev",
    "col.number": "Nummer",
    "col.status": "Status",
    "col.issued": "Utstedt",
    "col.retired": "Tatt ut av bruk",
    "col.library": "Bibliotek",
    "col.activated": "Aktivert",
    "col.how": "Aktivert via",
    "col.rules": "Lånereglement",
    "col.door": "Meråpent-avtale",
    "col.home": "Hjemmebibliotek",
    "col.time": "Tid",
    "col.channel": "Kanal",
    "col.who": "Hvem",
    "col.what": "Hva",
    "col.outcome": "Utfall",
    "card.active": "I bruk",
    "card.lost": "Meldt tapt",
    "card.replaced": "Erstattet av nytt kort",
    "card.deleted": "Slettet",
    "rules.version": "versjon {version}",
    "door.none": "Ingen avtale",
    "door.signed": "Inngått {date}, versjon {version}",
    "door.revoked": "Trukket tilbake {date}",
    "home.yes": "Ja",
    "home.no": "Nei",
    "via.operator": "Nasjonalbiblioteket",
    "via.sip2": "Selvbetjening (SIP2)",
    "via.ncip": "Bibliotekssystem",
    "via.web": "Min side",
    "via.import": "Lest inn fra bibliotekets tidligere system",
    # ------------------------------------------------------------------ innsyn
    "trail.title": "Hvem har sett på eller endret opplysningene dine",
    "trail.intro": "Hver gang et bibliotek, en automat, en meråpen dør, et bibliotekssystem, "
                   "Nasjonalbiblioteket eller du selv slår opp eller endrer opplysningene dine, blir det "
                   "logget. Her ser du loggen, nyeste først. Registeret lagrer ingenting om lån.",
    "trail.caption": "Oppslag og endringer, side {page} av {pages}",
    "trail.total": "{total} oppføringer i alt.",
    "trail.total_one": "1 oppføring i alt.",
    "trail.empty": "Ingen oppføringer på denne siden.",
    "trail.pages": "Sider i loggen",
    "trail.newer": "Nyere oppføringer",
    "trail.older": "Eldre oppføringer",
    "trail.page_of": "Side {page} av {pages}",
    "ch.kiosk": "Selvbetjeningsautomat (SIP2)",
    "ch.door": "Meråpen dør (SIP2)",
    "ch.ils": "Bibliotekssystem (SIP2)",
    "ch.ncip": "Bibliotekssystem (NCIP)",
    "ch.operator": "Nasjonalbiblioteket (drift)",
    "ch.web": "Du, på Min side",
    "ch.unknown": "Ukjent",
    "act.patron_register": "Registrerte deg som låner",
    "act.patron_register_refused": "Avviste en registrering",
    "act.patron_lookup": "Slo opp opplysningene dine",
    "act.patron_lookup_national_id": "Slo deg opp på fødselsnummer",
    "act.patron_update": "Endret opplysningene dine",
    "act.patron_activate": "Aktiverte lånekortet",
    "act.patron_block": "Sperret lånekortet",
    "act.patron_unblock": "Opphevet sperringen",
    "act.patron_delete": "Slettet deg fra registeret",
    "act.patron_export": "Lastet ned en kopi av opplysningene",
    "act.patron_check": "Kontrollerte lånekortet",
    "act.door": "Vurderte adgang gjennom døren",
    "act.door_agreement": "Inngikk meråpent-avtale",
    "act.door_revoke": "Trakk tilbake meråpent-avtalen",
    "act.door_restore": "Gjenopprettet meråpent-avtalen",
    "act.home_library": "Byttet hjemmebibliotek",
    "act.card_lost": "Meldte lånekortet tapt",
    "act.card_replace": "Utstedte nytt lånekort",
    "act.pin_set": "Satte ny PIN-kode",
    "act.pin_verify": "Kontrollerte PIN-koden",
    "act.fields": "Endret: {fields}",
    "detail.national_id_shown": "Fødselsnummeret ble vist",
    "detail.replaces": "Erstatter {card}",
    "out.ok": "Utført",
    "out.signed": "Inngått",
    "out.granted": "Godkjent",
    "out.wrong": "Feil PIN-kode",
    "out.locked": "PIN-koden var sperret",
    "out.no_pin": "Ingen PIN-kode",
    "out.unknown_card": "Ukjent kort",
    "out.card_lost": "Kortet var meldt tapt",
    "out.card_replaced": "Kortet var erstattet",
    "out.patron_blocked": "Avvist: kortet er sperret",
    "out.pin_wrong": "Avvist: feil PIN-kode",
    "out.pin_missing": "Avvist: PIN-kode mangler",
    "out.pin_locked": "Avvist: PIN-koden var sperret",
    "out.not_activated": "Avvist: kortet er ikke aktivert der",
    "out.door_no_agreement": "Avvist: ingen meråpent-avtale",
    "out.door_revoked": "Avvist: meråpent-avtalen er trukket tilbake",
    "out.door_underage": "Avvist: under aldersgrensen",
    "out.wrong_institution": "Avvist: feil bibliotek",
    "out.register_unavailable": "Registeret svarte ikke",
    "out.permission_denied": "Avvist: ikke tillatt",
    "out.not_found": "Ikke funnet",
    "out.not_affiliated": "Avvist: biblioteket er ikke ditt",
    "out.self_activation_off": "Avvist: biblioteket tillater ikke selvaktivering",
    "out.duplicate_patron": "Avvist: allerede registrert",
    "out.invalid_input": "Avvist: ugyldige opplysninger",
    "out.invalid_national_id": "Avvist: ugyldig fødselsnummer",
    "out.refused": "Avvist",
    "field.surname": "etternavn",
    "field.given_name": "fornavn",
    "field.gender": "kjønn",
    "field.address_line1": "adresse",
    "field.address_line2": "adresselinje 2",
    "field.postal_code": "postnummer",
    "field.city": "poststed",
    "field.country": "land",
    "field.temp_address_line1": "midlertidig adresse",
    "field.temp_postal_code": "midlertidig postnummer",
    "field.temp_city": "midlertidig poststed",
    "field.temp_address_until": "midlertidig adresse til",
    "field.email": "e-post",
    "field.phone": "telefon",
    "field.birth_date": "fødselsdato",
    "field.secret_address": "skjult adresse",
    "field.preferred_contact": "kontaktmåte",
    "field.national_id": "fødselsnummer",
    # ------------------------------------------------------------------ home library
    "home.title": "Hjemmebibliotek",
    "home.intro": "Hjemmebiblioteket ditt er det biblioteket som har hovedansvaret for deg som låner. "
                  "Du kan velge blant bibliotekene der lånekortet ditt er aktivert.",
    "home.legend": "Velg hjemmebibliotek",
    "home.current": "nåværende",
    "home.submit": "Lagre hjemmebibliotek",
    "home.saved": "Hjemmebiblioteket ditt er nå {library}.",
    "home.refused": "Du kan bare velge et bibliotek der lånekortet ditt er aktivert. Ingenting er endret.",
    "home.choose": "Velg et bibliotek. Ingenting er endret.",
    "home.only_one": "Lånekortet ditt er bare aktivert ved {library}. For å velge et annet hjemmebibliotek må du først"
                     " aktivere lånekortet ved det biblioteket.",
    "home.more": "Vil du bruke et annet bibliotek? Ta med lånekortet dit, så aktiverer de det.",
    # ------------------------------------------------------------------ PIN
    "pin.title": "Endre PIN-kode",
    "pin.intro": "Den nye PIN-koden gjelder med en gang: på alle bibliotekene dine, i automater og i meråpne "
                 "dører. Er du logget inn på Min side et annet sted, blir du logget ut der.",
    "pin.old": "Nåværende PIN-kode",
    "pin.new": "Ny PIN-kode",
    "pin.new_hint": "4 til 8 sifre.",
    "pin.again": "Gjenta ny PIN-kode",
    "pin.submit": "Endre PIN-kode",
    "pin.saved": "PIN-koden din er endret.",
    "pin.err_old": "Nåværende PIN-kode er feil. Ingenting er endret.",
    "pin.err_locked": "PIN-koden er sperret etter for mange feil forsøk. Prøv igjen senere, eller få hjelp på "
                      "biblioteket. Ingenting er endret.",
    "pin.err_differ": "De to nye PIN-kodene er ikke like. Ingenting er endret.",
    "pin.err_format": "Den nye PIN-koden må være 4 til 8 sifre. Ingenting er endret.",
    "pin.no_pin": "Du har ikke PIN-kode ennå. Du får en på biblioteket ditt.",
    # ------------------------------------------------------------------ about
    "about.title": "Om Nasjonalt lånerregister",
    "about.what_h": "Hva registeret er",
    "about.what_1": "Nasjonalt lånerregister er ett felles register over lånerne ved norske bibliotek. Med ett "
                    "lånekort kan du låne ved alle bibliotekene som er med.",
    "about.what_2": "Registeret har navnet ditt, kontaktopplysninger, fødselsnummeret ditt (kryptert), "
                    "lånekortene dine, PIN-koden (bare som en enveis kode) og hvilke bibliotek kortet er "
                    "aktivert ved. Det lagrer ingenting om hva du låner.",
    "about.what_3": "Hver gang noen slår opp eller endrer opplysningene dine, blir det logget. Du ser loggen "
                    "under Innsyn, og kan laste ned alt som er lagret om deg.",
    "about.legal_h": "Rettslig grunnlag",
    "about.legal_1": "Behandlingen er nødvendig for å oppfylle avtalen om lånekort mellom deg og bibliotekene, "
                     "jf. personvernforordningen (GDPR) artikkel 6 nr. 1 bokstav b. Folkebibliotekene drives "
                     "etter folkebibliotekloven. Fødselsnummeret brukes fordi det trengs for sikker identifisering "
                     "på tvers av bibliotekene (personopplysningsloven § 12).",
    "about.legal_2": "Du har rett til innsyn i det som er lagret om deg (artikkel 15). Min side gir deg det "
                     "direkte.",
    "about.responsible_h": "Hvem som er ansvarlig",
    "about.responsible_1": "Nasjonalbiblioteket er behandlingsansvarlig for registeret. Bibliotekene du er "
                           "aktivert ved, bruker registeret når du låner hos dem.",
    "about.changes_h": "Endre opplysninger",
    "about.changes_1": "Her på Min side kan du selv bytte hjemmebibliotek og PIN-kode. Andre endringer, som "
                       "navn, adresse og kontaktopplysninger, gjør et av bibliotekene dine. Ta med legitimasjon.",
    "about.changes_yours": "Bibliotekene dine:",
    "about.delete_h": "Sletting",
    "about.delete_1": "Vil du slettes fra registeret, ber du hjemmebiblioteket ditt om det. Da slettes "
                      "personopplysningene dine. Lånenummeret blir aldri gitt til noen andre.",
    "about.retention_h": "Hvor lenge opplysningene lagres",
    "about.retention_1": "Opplysningene lagres så lenge du er låner: til du ber om å bli slettet, eller til "
                         "biblioteket får melding om dødsfall.",
    "about.retention_2": "Loggen over oppslag og kontroller (i skranken, i automater og ved døra) slettes etter "
                         "{audit_days} dager. Loggen over endringer beholdes så lenge du er låner. Endringsmeldingene "
                         "bibliotekene henter, slettes etter {change_days} dager. Innloggingen på Min side avsluttes "
                         "etter {idle_minutes} minutter uten bruk, og senest etter {max_hours} timer.",
    "about.a11y_h": "Tilgjengelighetserklæring",
    "about.a11y_1": "Min side skal oppfylle kravene i WCAG 2.1 på nivå AA, slik forskrift om universell "
                    "utforming av IKT-løsninger krever. Sidene virker uten JavaScript, kan brukes med "
                    "tastatur alene og kan skrives ut.",
    "about.a11y_2": "Finner du noe som ikke virker, si fra til biblioteket ditt eller Nasjonalbiblioteket. "
                    "Tilsynet for universell utforming av IKT (uutilsynet.no) tar imot klager.",
    # ------------------------------------------------------------------ refusals and errors
    "err.403_title": "Forespørselen ble avvist",
    "err.403": "Skjemaet kom ikke fra denne siden, eller det var for gammelt. Ingenting er endret. Gå tilbake, "
               "last siden på nytt og prøv igjen.",
    "err.400_title": "Skjemaet kunne ikke leses",
    "err.400": "Skjemaet som ble sendt, kunne ikke leses. Ingenting er endret.",
    "err.404_title": "Fant ikke siden",
    "err.404": "Siden du ba om, finnes ikke.",
    "err.405_title": "Ikke tillatt",
    "err.405": "Denne siden kan ikke brukes på den måten.",
    "err.413_title": "For mye data",
    "err.413": "Skjemaet som ble sendt, var for stort. Ingenting er endret.",
    "err.500_title": "Noe gikk galt",
    "err.500": "Noe gikk galt hos oss. Prøv igjen om litt.",
    "err.503_title": "Registeret er ikke tilgjengelig akkurat nå",
    "err.503": "Nasjonalt lånerregister svarer ikke akkurat nå. Ingenting er endret. Prøv igjen om litt.",
    "err.back": "Til Min side",
}

EN: dict[str, str] = {
    "site.name": "National library card register",
    "site.page": "My page",
    "skip": "Skip to main content",
    "nav.label": "My page",
    "nav.overview": "Overview",
    "nav.trail": "Access log",
    "nav.home": "Home library",
    "nav.pin": "PIN",
    "nav.about": "About the register",
    "nav.login": "Log in",
    "logout": "Log out",
    "logged_in_as": "Logged in as {name}",
    "lang.label": "Language",
    "footer.responsible": "The National Library of Norway is responsible for the national library card register.",
    "footer.about": "About the register and privacy",
    "footer.a11y": "Accessibility statement",
    "footer.loans": "The register stores nothing about what you borrow.",
    "error.summary": "Please correct this",
    "error.prefix": "Error:",
    "notice.done": "Done",
    "none": "Not recorded",
    "dash": "–",
    "login.title": "Log in to My page",
    "login.intro": "Log in with your card number and PIN to see what the national library card register "
                   "holds about you, and who has looked at it.",
    "login.card": "Card number",
    "login.card_hint": "It is on your library card, for example N000100001.",
    "login.pin": "PIN",
    "login.pin_hint": "No PIN? Your library gives you one.",
    "login.submit": "Log in",
    "login.failed": "Wrong card number or PIN",
    "login.throttled": "Too many failed logins from your network. Wait a few minutes and try again.",
    "login.stale": "The form had expired. Please try again.",
    "login.logged_out": "You have logged out.",
    "login.expired": "You were logged out because your session had ended. Please log in again.",
    "overview.title": "What is stored about you",
    "overview.person": "Personal details",
    "overview.blocked": "Your card is blocked. Please contact one of your libraries.",
    "overview.block_reason": "Reason: {reason}",
    "overview.cards": "Library cards",
    "overview.cards_caption": "Your library cards, current and earlier",
    "overview.libraries": "Your libraries",
    "overview.libraries_caption": "Libraries where your card is activated",
    "overview.no_libraries": "Your card is not activated at any library.",
    "overview.download_h": "Download a copy",
    "overview.download": "Download everything stored about you (JSON)",
    "overview.download_note": "A copy in a common machine-readable format, with the log of lookups and changes.",
    "overview.change_note": "Is something wrong? One of your libraries corrects it. You can change your home "
                            "library and your PIN yourself.",
    "export.note": "The register stores nothing about loans, reservations or fines.",
    "export.address_note": "An address is held and kept secret. It is not shown here; see it in person at one of your "
                           "libraries, with identification.",
    "f.name": "Name",
    "f.card": "Card number",
    "f.home": "Home library",
    "f.birth_date": "Date of birth",
    "f.national_id": "National identity number",
    "f.national_id_note": "The last five digits are not shown here.",
    "f.gender": "Gender",
    "f.address": "Address",
    "f.temp_address": "Temporary address",
    "f.temp_until": "until {date}",
    "f.secret_address": "An address is held for you, and it is hidden. To see it, visit one of your libraries in "
                        "person with identification.",
    "f.phone": "Phone",
    "f.email": "Email",
    "f.contact": "Preferred contact",
    "f.pin": "PIN",
    "f.registered": "Registered",
    "f.updated": "Last changed",
    "pin.is_set": "You have a PIN.",
    "pin.not_set": "You have no PIN.",
    "pin.locked_until": "Locked until {time} after too many wrong attempts.",
    "gender.M": "Male",
    "gender.F": "Female",
    "gender.X": "Other",
    "contact.email": "Email",
    "contact.sms": "Text message",
    "contact.phone": "Phone",
    "contact.letter": "Letter",
    "col.number": "Number",
    "col.status": "Status",
    "col.issued": "Issued",
    "col.retired": "Retired",
    "col.library": "Library",
    "col.activated": "Activated",
    "col.how": "Activated through",
    "col.rules": "Library rules",
    "col.door": "Open library agreement",
    "col.home": "Home library",
    "col.time": "Time",
    "col.channel": "Channel",
    "col.who": "Who",
    "col.what": "What",
    "col.outcome": "Outcome",
    "card.active": "In use",
    "card.lost": "Reported lost",
    "card.replaced": "Replaced by a new card",
    "card.deleted": "Deleted",
    "rules.version": "version {version}",
    "door.none": "No agreement",
    "door.signed": "Signed {date}, version {version}",
    "door.revoked": "Revoked {date}",
    "home.yes": "Yes",
    "home.no": "No",
    "via.operator": "The National Library",
    "via.sip2": "Self-service (SIP2)",
    "via.ncip": "Library system",
    "via.web": "My page",
    "via.import": "Imported from the library's earlier system",
    "trail.title": "Who has looked at or changed your data",
    "trail.intro": "Every time a library, a kiosk, an open library door, a library system, the National Library "
                   "or you yourself look up or change your data, it is logged. Here is the log, newest first. "
                   "The register stores nothing about loans.",
    "trail.caption": "Lookups and changes, page {page} of {pages}",
    "trail.total": "{total} entries in all.",
    "trail.total_one": "1 entry in all.",
    "trail.empty": "No entries on this page.",
    "trail.pages": "Pages of the log",
    "trail.newer": "Newer entries",
    "trail.older": "Older entries",
    "trail.page_of": "Page {page} of {pages}",
    "ch.kiosk": "Self-service kiosk (SIP2)",
    "ch.door": "Open library door (SIP2)",
    "ch.ils": "Library system (SIP2)",
    "ch.ncip": "Library system (NCIP)",
    "ch.operator": "The National Library (operator)",
    "ch.web": "You, on My page",
    "ch.unknown": "Unknown",
    "act.patron_register": "Registered you as a borrower",
    "act.patron_register_refused": "Refused a registration",
    "act.patron_lookup": "Looked up your data",
    "act.patron_lookup_national_id": "Looked you up by national identity number",
    "act.patron_update": "Changed your data",
    "act.patron_activate": "Activated your card",
    "act.patron_block": "Blocked your card",
    "act.patron_unblock": "Lifted the block",
    "act.patron_delete": "Deleted you from the register",
    "act.patron_export": "Downloaded a copy of your data",
    "act.patron_check": "Checked your card",
    "act.door": "Decided on entry through the door",
    "act.door_agreement": "Open library agreement signed",
    "act.door_revoke": "Open library agreement revoked",
    "act.door_restore": "Open library agreement restored",
    "act.home_library": "Changed your home library",
    "act.card_lost": "Reported your card lost",
    "act.card_replace": "Issued a new card",
    "act.pin_set": "Set a new PIN",
    "act.pin_verify": "Checked your PIN",
    "act.fields": "Changed: {fields}",
    "detail.national_id_shown": "The national identity number was shown",
    "detail.replaces": "Replaces {card}",
    "out.ok": "Done",
    "out.signed": "Signed",
    "out.granted": "Granted",
    "out.wrong": "Wrong PIN",
    "out.locked": "The PIN was locked",
    "out.no_pin": "No PIN",
    "out.unknown_card": "Unknown card",
    "out.card_lost": "The card was reported lost",
    "out.card_replaced": "The card had been replaced",
    "out.patron_blocked": "Refused: the card is blocked",
    "out.pin_wrong": "Refused: wrong PIN",
    "out.pin_missing": "Refused: no PIN given",
    "out.pin_locked": "Refused: the PIN was locked",
    "out.not_activated": "Refused: the card is not activated there",
    "out.door_no_agreement": "Refused: no open library agreement",
    "out.door_revoked": "Refused: the open library agreement is revoked",
    "out.door_underage": "Refused: under the age limit",
    "out.wrong_institution": "Refused: wrong library",
    "out.register_unavailable": "The register did not answer",
    "out.permission_denied": "Refused: not permitted",
    "out.not_found": "Not found",
    "out.not_affiliated": "Refused: not one of your libraries",
    "out.self_activation_off": "Refused: the library does not allow self-activation",
    "out.duplicate_patron": "Refused: already registered",
    "out.invalid_input": "Refused: invalid details",
    "out.invalid_national_id": "Refused: invalid national identity number",
    "out.refused": "Refused",
    "field.surname": "surname",
    "field.given_name": "given name",
    "field.gender": "gender",
    "field.address_line1": "address",
    "field.address_line2": "address line 2",
    "field.postal_code": "postal code",
    "field.city": "city",
    "field.country": "country",
    "field.temp_address_line1": "temporary address",
    "field.temp_postal_code": "temporary postal code",
    "field.temp_city": "temporary city",
    "field.temp_address_until": "temporary address until",
    "field.email": "email",
    "field.phone": "phone",
    "field.birth_date": "date of birth",
    "field.secret_address": "hidden address",
    "field.preferred_contact": "preferred contact",
    "field.national_id": "national identity number",
    "home.title": "Home library",
    "home.intro": "Your home library is the library mainly responsible for you as a borrower. You can choose "
                  "among the libraries where your card is activated.",
    "home.legend": "Choose your home library",
    "home.current": "current",
    "home.submit": "Save home library",
    "home.saved": "Your home library is now {library}.",
    "home.refused": "You can only choose a library where your card is activated. Nothing was changed.",
    "home.choose": "Choose a library. Nothing was changed.",
    "home.only_one": "Your card is activated at {library} only. To choose another home library, first have your card "
                     "activated at that library.",
    "home.more": "Want to use another library? Bring your card there and they will activate it.",
    "pin.title": "Change your PIN",
    "pin.intro": "The new PIN works at once: at all your libraries, at kiosks and at open library doors. If you "
                 "are logged in to My page anywhere else, you are logged out there.",
    "pin.old": "Current PIN",
    "pin.new": "New PIN",
    "pin.new_hint": "4 to 8 digits.",
    "pin.again": "Repeat the new PIN",
    "pin.submit": "Change PIN",
    "pin.saved": "Your PIN has been changed.",
    "pin.err_old": "The current PIN is wrong. Nothing was changed.",
    "pin.err_locked": "Your PIN is locked after too many wrong attempts. Try again later, or ask at your library. "
                      "Nothing was changed.",
    "pin.err_differ": "The two new PINs are not the same. Nothing was changed.",
    "pin.err_format": "The new PIN must be 4 to 8 digits. Nothing was changed.",
    "pin.no_pin": "You have no PIN yet. Your library gives you one.",
    "about.title": "About the national library card register",
    "about.what_h": "What the register is",
    "about.what_1": "The national library card register is one shared register of the borrowers of Norway's "
                    "libraries. With one card you can borrow at every library that takes part.",
    "about.what_2": "It holds your name, contact details, national identity number (encrypted), your cards, "
                    "your PIN (only as a one-way code) and the libraries your card is activated at. It stores "
                    "nothing about what you borrow.",
    "about.what_3": "Every time someone looks up or changes your data, it is logged. You see the log under "
                    "Access log, and can download everything stored about you.",
    "about.legal_h": "Legal basis",
    "about.legal_1": "Processing your data is necessary for the library card agreement between you and the "
                     "libraries, under Article 6(1)(b) of the General Data Protection Regulation (GDPR). Public "
                     "libraries are governed by the Public Libraries Act (folkebibliotekloven). Your national "
                     "identity number is used because secure identification across libraries needs it "
                     "(section 12 of the Personal Data Act).",
    "about.legal_2": "You have the right to see what is stored about you (Article 15). My page gives you that "
                     "directly.",
    "about.responsible_h": "Who is responsible",
    "about.responsible_1": "The National Library of Norway (Nasjonalbiblioteket) is the controller of the "
                           "register. The libraries your card is activated at use it when you borrow there.",
    "about.changes_h": "Changing your data",
    "about.changes_1": "Here on My page you can change your home library and your PIN yourself. Other changes, "
                       "such as your name, address and contact details, are made by one of your libraries. "
                       "Bring identification.",
    "about.changes_yours": "Your libraries:",
    "about.delete_h": "Deletion",
    "about.delete_1": "To be deleted from the register, ask your home library. Your personal data is then "
                      "erased. Your card number is never given to anyone else.",
    "about.retention_h": "How long data is kept",
    "about.retention_1": "Your data is kept as long as you are a borrower: until you ask to be deleted, or the "
                         "library is told of a death.",
    "about.retention_2": "The log of lookups and checks (at the desk, at kiosks and at the door) is deleted after "
                         "{audit_days} days. The log of changes is kept as long as you are a borrower. The change "
                         "notices the libraries fetch are deleted after {change_days} days. A login on My page ends "
                         "after {idle_minutes} minutes without use, and after {max_hours} hours at the latest.",
    "about.a11y_h": "Accessibility statement",
    "about.a11y_1": "My page aims to meet WCAG 2.1 level AA, as the Norwegian regulations on universal design "
                    "of ICT require. The pages work without JavaScript, can be used with a keyboard alone and "
                    "can be printed.",
    "about.a11y_2": "If something does not work for you, tell your library or the National Library. The "
                    "Authority for Universal Design of ICT (uutilsynet.no) handles complaints.",
    "err.403_title": "The request was refused",
    "err.403": "The form did not come from this page, or it was too old. Nothing was changed. Go back, reload "
               "the page and try again.",
    "err.400_title": "The form could not be read",
    "err.400": "The form that was sent could not be read. Nothing was changed.",
    "err.404_title": "Page not found",
    "err.404": "The page you asked for does not exist.",
    "err.405_title": "Not allowed",
    "err.405": "This page cannot be used that way.",
    "err.413_title": "Too much data",
    "err.413": "The form that was sent was too large. Nothing was changed.",
    "err.500_title": "Something went wrong",
    "err.500": "Something went wrong on our side. Please try again shortly.",
    "err.503_title": "The register is unavailable right now",
    "err.503": "The national library card register is not answering right now. Nothing was changed. Please try "
               "again shortly.",
    "err.back": "Back to My page",
}

NN: dict[str, str] = {
    "site.name": "Nasjonalt lånarregister",
    "site.page": "Mi side",
    "skip": "Hopp til hovudinnhaldet",
    "nav.label": "Mi side",
    "nav.overview": "Oversikt",
    "nav.trail": "Innsyn",
    "nav.home": "Heimebibliotek",
    "nav.pin": "PIN-kode",
    "nav.about": "Om registeret",
    "nav.login": "Logg inn",
    "logout": "Logg ut",
    "logged_in_as": "Logga inn som {name}",
    "lang.label": "Språk",
    "footer.responsible": "Nasjonalbiblioteket er ansvarleg for Nasjonalt lånarregister.",
    "footer.about": "Om registeret og personvern",
    "footer.a11y": "Tilgjengeerklæring",
    "footer.loans": "Registeret lagrar ingenting om kva du lånar.",
    "error.summary": "Dette må du rette",
    "error.prefix": "Feil:",
    "notice.done": "Utført",
    "none": "Ikkje registrert",
    "dash": "–",
    "login.title": "Logg inn på Mi side",
    "login.intro": "Logg inn med lånenummeret og PIN-koden din for å sjå kva som er lagra om deg i Nasjonalt "
                   "lånarregister, og kven som har sett på det.",
    "login.card": "Lånenummer",
    "login.card_hint": "Står på lånekortet ditt, til dømes N000100001.",
    "login.pin": "PIN-kode",
    "login.pin_hint": "Har du ikkje PIN-kode? Du får ein på biblioteket ditt.",
    "login.submit": "Logg inn",
    "login.failed": "Feil lånenummer eller PIN-kode",
    "login.throttled": "For mange mislukka innloggingar frå nettverket ditt. Vent nokre minutt og prøv igjen.",
    "login.stale": "Skjemaet hadde gått ut. Prøv igjen.",
    "login.logged_out": "Du er logga ut.",
    "login.expired": "Du vart logga ut fordi økta var avslutta. Logg inn igjen.",
    "overview.title": "Dette er lagra om deg",
    "overview.person": "Personopplysningar",
    "overview.blocked": "Lånekortet ditt er sperra. Ta kontakt med eit av biblioteka dine.",
    "overview.block_reason": "Årsak: {reason}",
    "overview.cards": "Lånekort",
    "overview.cards_caption": "Lånekorta dine, noverande og tidlegare",
    "overview.libraries": "Biblioteka dine",
    "overview.libraries_caption": "Bibliotek der lånekortet ditt er aktivert",
    "overview.no_libraries": "Lånekortet ditt er ikkje aktivert ved noko bibliotek.",
    "overview.download_h": "Last ned ein kopi",
    "overview.download": "Last ned alt som er lagra om deg (JSON)",
    "overview.download_note": "Ein kopi i eit vanleg maskinlesbart format, med loggen over oppslag og endringar.",
    "overview.change_note": "Er noko feil? Eit av biblioteka dine rettar det. Du kan sjølv byte heimebibliotek og "
                            "PIN-kode.",
    "export.note": "Registeret lagrar ingenting om lån, reserveringar eller gebyr.",
    "export.address_note": "Det er registrert ei adresse på deg, og ho er skjult. Ho blir ikkje vist her. Du kan sjå "
                           "ho ved å møte opp på eit av biblioteka dine med legitimasjon.",
    "f.name": "Namn",
    "f.card": "Lånenummer",
    "f.home": "Heimebibliotek",
    "f.birth_date": "Fødselsdato",
    "f.national_id": "Fødselsnummer",
    "f.national_id_note": "Dei fem siste sifra blir ikkje viste her.",
    "f.gender": "Kjønn",
    "f.address": "Adresse",
    "f.temp_address": "Mellombels adresse",
    "f.temp_until": "til og med {date}",
    "f.secret_address": "Det er registrert ei adresse på deg, men ho er skjult. Du kan sjå ho ved å møte opp på "
                        "eit av biblioteka dine med legitimasjon.",
    "f.phone": "Telefon",
    "f.email": "E-post",
    "f.contact": "Føretrekt kontaktmåte",
    "f.pin": "PIN-kode",
    "f.registered": "Registrert",
    "f.updated": "Sist endra",
    "pin.is_set": "Du har PIN-kode.",
    "pin.not_set": "Du har ikkje PIN-kode.",
    "pin.locked_until": "Sperra til {time} etter for mange feil forsøk.",
    "gender.M": "Mann",
    "gender.F": "Kvinne",
    "gender.X": "Anna",
    "contact.email": "E-post",
    "contact.sms": "SMS",
    "contact.phone": "Telefon",
    "contact.letter": "Brev",
    "col.number": "Nummer",
    "col.status": "Status",
    "col.issued": "Utferda",
    "col.retired": "Teken ut av bruk",
    "col.library": "Bibliotek",
    "col.activated": "Aktivert",
    "col.how": "Aktivert via",
    "col.rules": "Lånereglement",
    "col.door": "Meirope-avtale",
    "col.home": "Heimebibliotek",
    "col.time": "Tid",
    "col.channel": "Kanal",
    "col.who": "Kven",
    "col.what": "Kva",
    "col.outcome": "Utfall",
    "card.active": "I bruk",
    "card.lost": "Meldt tapt",
    "card.replaced": "Erstatta av nytt kort",
    "card.deleted": "Sletta",
    "rules.version": "versjon {version}",
    "door.none": "Ingen avtale",
    "door.signed": "Inngått {date}, versjon {version}",
    "door.revoked": "Trekt tilbake {date}",
    "home.yes": "Ja",
    "home.no": "Nei",
    "via.operator": "Nasjonalbiblioteket",
    "via.sip2": "Sjølvbetening (SIP2)",
    "via.ncip": "Bibliotekssystem",
    "via.web": "Mi side",
    "via.import": "Lesen inn frå det tidlegare systemet til biblioteket",
    "trail.title": "Kven har sett på eller endra opplysningane dine",
    "trail.intro": "Kvar gong eit bibliotek, ein automat, ei meirope dør, eit bibliotekssystem, "
                   "Nasjonalbiblioteket eller du sjølv slår opp eller endrar opplysningane dine, blir det "
                   "logga. Her ser du loggen, nyaste først. Registeret lagrar ingenting om lån.",
    "trail.caption": "Oppslag og endringar, side {page} av {pages}",
    "trail.total": "{total} oppføringar i alt.",
    "trail.total_one": "1 oppføring i alt.",
    "trail.empty": "Ingen oppføringar på denne sida.",
    "trail.pages": "Sider i loggen",
    "trail.newer": "Nyare oppføringar",
    "trail.older": "Eldre oppføringar",
    "trail.page_of": "Side {page} av {pages}",
    "ch.kiosk": "Sjølvbeteningsautomat (SIP2)",
    "ch.door": "Meirope dør (SIP2)",
    "ch.ils": "Bibliotekssystem (SIP2)",
    "ch.ncip": "Bibliotekssystem (NCIP)",
    "ch.operator": "Nasjonalbiblioteket (drift)",
    "ch.web": "Du, på Mi side",
    "ch.unknown": "Ukjend",
    "act.patron_register": "Registrerte deg som lånar",
    "act.patron_register_refused": "Avviste ei registrering",
    "act.patron_lookup": "Slo opp opplysningane dine",
    "act.patron_lookup_national_id": "Slo deg opp på fødselsnummer",
    "act.patron_update": "Endra opplysningane dine",
    "act.patron_activate": "Aktiverte lånekortet",
    "act.patron_block": "Sperra lånekortet",
    "act.patron_unblock": "Oppheva sperringa",
    "act.patron_delete": "Sletta deg frå registeret",
    "act.patron_export": "Lasta ned ein kopi av opplysningane",
    "act.patron_check": "Kontrollerte lånekortet",
    "act.door": "Vurderte tilgang gjennom døra",
    "act.door_agreement": "Inngjekk meirope-avtale",
    "act.door_revoke": "Trekte tilbake meirope-avtalen",
    "act.door_restore": "Gjenoppretta meirope-avtalen",
    "act.home_library": "Bytte heimebibliotek",
    "act.card_lost": "Lånekortet vart meldt tapt",
    "act.card_replace": "Utferda nytt lånekort",
    "act.pin_set": "Sette ny PIN-kode",
    "act.pin_verify": "Kontrollerte PIN-koden",
    "act.fields": "Endra: {fields}",
    "detail.national_id_shown": "Fødselsnummeret vart vist",
    "detail.replaces": "Erstattar {card}",
    "out.ok": "Utført",
    "out.signed": "Inngått",
    "out.granted": "Godkjent",
    "out.wrong": "Feil PIN-kode",
    "out.locked": "PIN-koden var sperra",
    "out.no_pin": "Ingen PIN-kode",
    "out.unknown_card": "Ukjent kort",
    "out.card_lost": "Kortet var meldt tapt",
    "out.card_replaced": "Kortet var erstatta",
    "out.patron_blocked": "Avvist: kortet er sperra",
    "out.pin_wrong": "Avvist: feil PIN-kode",
    "out.pin_missing": "Avvist: PIN-kode manglar",
    "out.pin_locked": "Avvist: PIN-koden var sperra",
    "out.not_activated": "Avvist: kortet er ikkje aktivert der",
    "out.door_no_agreement": "Avvist: ingen meirope-avtale",
    "out.door_revoked": "Avvist: meirope-avtalen er trekt tilbake",
    "out.door_underage": "Avvist: under aldersgrensa",
    "out.wrong_institution": "Avvist: feil bibliotek",
    "out.register_unavailable": "Registeret svarte ikkje",
    "out.permission_denied": "Avvist: ikkje tillate",
    "out.not_found": "Ikkje funne",
    "out.not_affiliated": "Avvist: biblioteket er ikkje eitt av dine",
    "out.self_activation_off": "Avvist: biblioteket tillèt ikkje sjølvaktivering",
    "out.duplicate_patron": "Avvist: allereie registrert",
    "out.invalid_input": "Avvist: ugyldige opplysningar",
    "out.invalid_national_id": "Avvist: ugyldig fødselsnummer",
    "out.refused": "Avvist",
    "field.given_name": "førenamn",
    "field.gender": "kjønn",
    "field.address_line1": "adresse",
    "field.address_line2": "adresselinje 2",
    "field.postal_code": "postnummer",
    "field.surname": "etternamn",
    "field.temp_address_line1": "mellombels adresse",
    "field.temp_postal_code": "mellombels postnummer",
    "field.temp_city": "mellombels poststad",
    "field.temp_address_until": "mellombels adresse til",
    "field.email": "e-post",
    "field.phone": "telefon",
    "field.birth_date": "fødselsdato",
    "field.secret_address": "skjult adresse",
    "field.preferred_contact": "kontaktmåte",
    "field.national_id": "fødselsnummer",
    "field.city": "poststad",
    "field.country": "land",
    "home.title": "Heimebibliotek",
    "home.intro": "Heimebiblioteket ditt er det biblioteket som har hovudansvaret for deg som lånar. Du kan "
                  "velje mellom biblioteka der lånekortet ditt er aktivert.",
    "home.legend": "Vel heimebibliotek",
    "home.current": "noverande",
    "home.submit": "Lagre heimebibliotek",
    "home.saved": "Heimebiblioteket ditt er no {library}.",
    "home.refused": "Du kan berre velje eit bibliotek der lånekortet ditt er aktivert. Ingenting er endra.",
    "home.choose": "Vel eit bibliotek. Ingenting er endra.",
    "home.only_one": "Lånekortet ditt er berre aktivert ved {library}. For å velje eit anna heimebibliotek må du først"
                     " aktivere lånekortet ved det biblioteket.",
    "home.more": "Vil du bruke eit anna bibliotek? Ta med lånekortet dit, så aktiverer dei det.",
    "pin.title": "Endre PIN-kode",
    "pin.intro": "Den nye PIN-koden gjeld med ein gong: på alle biblioteka dine, i automatar og i meirope dører. "
                 "Er du logga inn på Mi side ein annan stad, blir du logga ut der.",
    "pin.old": "Noverande PIN-kode",
    "pin.new": "Ny PIN-kode",
    "pin.new_hint": "4 til 8 siffer.",
    "pin.again": "Gjenta den nye PIN-koden",
    "pin.submit": "Endre PIN-kode",
    "pin.saved": "PIN-koden din er endra.",
    "pin.err_old": "Noverande PIN-kode er feil. Ingenting er endra.",
    "pin.err_locked": "PIN-koden er sperra etter for mange feil forsøk. Prøv igjen seinare, eller få hjelp på "
                      "biblioteket. Ingenting er endra.",
    "pin.err_differ": "Dei to nye PIN-kodane er ikkje like. Ingenting er endra.",
    "pin.err_format": "Den nye PIN-koden må vere 4 til 8 siffer. Ingenting er endra.",
    "pin.no_pin": "Du har ikkje PIN-kode enno. Du får ein på biblioteket ditt.",
    "about.title": "Om Nasjonalt lånarregister",
    "about.what_h": "Kva registeret er",
    "about.what_1": "Nasjonalt lånarregister er eitt felles register over lånarane ved norske bibliotek. Med eitt "
                    "lånekort kan du låne ved alle biblioteka som er med.",
    "about.what_2": "Registeret har namnet ditt, kontaktopplysningar, fødselsnummeret ditt (kryptert), lånekorta "
                    "dine, PIN-koden (berre som ein einvegskode) og kva bibliotek kortet er aktivert ved. Det "
                    "lagrar ingenting om kva du lånar.",
    "about.what_3": "Kvar gong nokon slår opp eller endrar opplysningane dine, blir det logga. Du ser loggen "
                    "under Innsyn, og kan laste ned alt som er lagra om deg.",
    "about.legal_h": "Rettsleg grunnlag",
    "about.legal_1": "Behandlinga er naudsynt for å oppfylle avtalen om lånekort mellom deg og biblioteka, "
                     "jf. personvernforordninga (GDPR) artikkel 6 nr. 1 bokstav b. Folkebiblioteka blir drivne "
                     "etter folkebiblioteklova. Fødselsnummeret blir brukt fordi det trengst for sikker "
                     "identifisering på tvers av biblioteka (personopplysningslova § 12).",
    "about.legal_2": "Du har rett til innsyn i det som er lagra om deg (artikkel 15). Mi side gir deg det direkte.",
    "about.responsible_h": "Kven som er ansvarleg",
    "about.responsible_1": "Nasjonalbiblioteket er behandlingsansvarleg for registeret. Biblioteka du er aktivert "
                           "ved, bruker registeret når du lånar hos dei.",
    "about.changes_h": "Endre opplysningar",
    "about.changes_1": "Her på Mi side kan du sjølv byte heimebibliotek og PIN-kode. Andre endringar, som namn, "
                       "adresse og kontaktopplysningar, gjer eit av biblioteka dine. Ta med legitimasjon.",
    "about.changes_yours": "Biblioteka dine:",
    "about.delete_h": "Sletting",
    "about.delete_1": "Vil du bli sletta frå registeret, ber du heimebiblioteket ditt om det. Då blir "
                      "personopplysningane dine sletta. Lånenummeret blir aldri gitt til nokon andre.",
    "about.retention_h": "Kor lenge opplysningane blir lagra",
    "about.retention_1": "Opplysningane blir lagra så lenge du er lånar: til du ber om å bli sletta, eller til "
                         "biblioteket får melding om dødsfall.",
    "about.retention_2": "Loggen over oppslag og kontrollar (i skranken, i automatar og ved døra) blir sletta etter "
                         "{audit_days} dagar. Loggen over endringar blir teken vare på så lenge du er lånar. "
                         "Endringsmeldingane biblioteka hentar, blir sletta etter {change_days} dagar. Innlogginga "
                         "på Mi side blir avslutta etter {idle_minutes} minutt utan bruk, og seinast etter "
                         "{max_hours} timar.",
    "about.a11y_h": "Tilgjengeerklæring",
    "about.a11y_1": "Mi side skal oppfylle krava i WCAG 2.1 på nivå AA, slik forskrift om universell utforming av "
                    "IKT-løysingar krev. Sidene verkar utan JavaScript, kan brukast med tastatur åleine og kan "
                    "skrivast ut.",
    "about.a11y_2": "Finn du noko som ikkje verkar, sei frå til biblioteket ditt eller Nasjonalbiblioteket. "
                    "Tilsynet for universell utforming av IKT (uutilsynet.no) tek imot klagar.",
    "err.403_title": "Førespurnaden vart avvist",
    "err.403": "Skjemaet kom ikkje frå denne sida, eller det var for gammalt. Ingenting er endra. Gå tilbake, last "
               "sida på nytt og prøv igjen.",
    "err.400_title": "Skjemaet kunne ikkje lesast",
    "err.400": "Skjemaet som vart sendt, kunne ikkje lesast. Ingenting er endra.",
    "err.404_title": "Fann ikkje sida",
    "err.404": "Sida du bad om, finst ikkje.",
    "err.405_title": "Ikkje tillate",
    "err.405": "Denne sida kan ikkje brukast på den måten.",
    "err.413_title": "For mykje data",
    "err.413": "Skjemaet som vart sendt, var for stort. Ingenting er endra.",
    "err.500_title": "Noko gjekk gale",
    "err.500": "Noko gjekk gale hos oss. Prøv igjen om litt.",
    "err.503_title": "Registeret er ikkje tilgjengeleg akkurat no",
    "err.503": "Nasjonalt lånarregister svarar ikkje akkurat no. Ingenting er endra. Prøv igjen om litt.",
    "err.back": "Til Mi side",
}

CATALOGUES: dict[str, dict[str, str]] = {"nb": NB, "en": EN, "nn": NN}

_MONTHS = {
    "nb": ("januar", "februar", "mars", "april", "mai", "juni", "juli", "august", "september", "oktober",
           "november", "desember"),
    "nn": ("januar", "februar", "mars", "april", "mai", "juni", "juli", "august", "september", "oktober",
           "november", "desember"),
    "en": ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
           "November", "December"),
}


class Translator:
    """The texts and formats of one language, for a template (``t``, ``when``, ``day``)."""

    def __init__(self, lang: str) -> None:
        self.lang = lang if lang in CATALOGUES else DEFAULT
        self._texts = CATALOGUES[self.lang]

    def __call__(self, key: str, **values: object) -> str:
        text = self._texts.get(key) or NB.get(key) or key
        return text.format(**values) if values else text

    def has(self, key: str) -> bool:
        return key in self._texts or key in NB

    def day(self, value: date | None) -> str:
        """A date: ``14. mars 1985`` / ``14 March 1985``."""
        if value is None:
            return ""
        if isinstance(value, datetime):
            value = value.astimezone(OSLO).date()
        month = _MONTHS[self.lang][value.month - 1]
        return f"{value.day} {month} {value.year}" if self.lang == "en" else f"{value.day}. {month} {value.year}"

    def when(self, value: datetime | None) -> str:
        """A moment in Europe/Oslo, to the minute: ``2. desember 2026 kl. 14:05`` / ``2 December 2026, 14:05``."""
        if value is None:
            return ""
        local = value.astimezone(OSLO)
        clock = f"{local.hour:02d}:{local.minute:02d}"
        return f"{self.day(local.date())}, {clock}" if self.lang == "en" else f"{self.day(local.date())} kl. {clock}"


def trail_words(t: Translator, action: str, outcome: str, detail: str | None) -> tuple[str, str, str]:
    """(what, the detail, the outcome) of one trail entry in plain words; an action, outcome or
    detail the catalogue does not know is shown as the register recorded it."""
    key = "act.patron_register_refused" if action == "patron_register" and outcome != "ok" else f"act.{action}"
    what = t(key) if t.has(key) else action
    words = ""
    if detail:
        if action == "patron_update":
            names = [d.strip() for d in detail.split(",") if d.strip()]
            words = t("act.fields", fields=", ".join(t(f"field.{n}") if t.has(f"field.{n}") else n for n in names))
        elif detail == "national id shown":
            words = t("detail.national_id_shown")
        elif detail.startswith("replaces "):
            words = t("detail.replaces", card=detail.removeprefix("replaces "))
        else:
            words = detail
    said = t(f"out.{outcome}") if t.has(f"out.{outcome}") else outcome
    return what, words, said


def from_accept_language(header: str | None) -> str | None:
    """The first language of ``Accept-Language`` (by q-value, then order) that Min side speaks."""
    if not header:
        return None
    ranked: list[tuple[float, int, str]] = []
    for i, part in enumerate(header[:1000].split(",")[:30]):
        tag, *params = (p.strip() for p in part.split(";"))
        q = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        if q > 0:
            ranked.append((-q, i, tag.lower()))
    for _q, _i, tag in sorted(ranked):
        lang = _TAGS.get(tag.split("-", 1)[0])
        if lang is not None:
            return lang
    return None


def choose(query: str | None, cookie: str | None, accept: str | None) -> tuple[str, bool]:
    """The page's language, and whether it was chosen now (``?lang=``: remembered in a cookie).

    ``?lang=`` first, then the remembered choice, then ``Accept-Language``, then bokmål."""
    if query is not None and query in CATALOGUES:
        return query, True
    if cookie is not None and cookie in CATALOGUES:
        return cookie, False
    return from_accept_language(accept) or DEFAULT, False
