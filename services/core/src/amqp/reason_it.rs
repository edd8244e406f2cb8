//! What a held message's reason means, in Italian, for the operators who read the console
//! (issue 24). The machine-readable reason stays as it is in `x-raccordo-error`; this is
//! shown beside it.

/// The Italian explanation of `reason` (an `x-raccordo-error` or a delivery's last error),
/// or `None` when the hub does not know its class (the technical reason is then shown alone).
pub fn reason_it(reason: &str) -> Option<&'static str> {
    let r = reason.to_lowercase();
    let has = |needle: &str| r.contains(needle);
    Some(if r.starts_with("not json") {
        "Il messaggio non è JSON valido: il sistema che l'ha pubblicato deve correggerlo."
    } else if has("control character") {
        "Un testo contiene caratteri di controllo (a capo, NUL o simili), che potrebbero \
         alterare un'intestazione email: l'evento va ripubblicato senza."
    } else if has("envelope violation") {
        "La busta CloudEvents non è valida (un campo obbligatorio manca o è errato)."
    } else if has("unknown event type") {
        "Tipo di evento sconosciuto: nessun servizio dell'hub lo elabora."
    } else if has("schema violation") || has("does not fit the type") {
        "I dati dell'evento non rispettano lo schema del suo tipo (il dettaglio indica quale \
         campo)."
    } else if has("no worker handles") || has("no worker is bound") {
        "Nessun servizio elabora questo tipo di evento su questa coda."
    } else if has("-byte limit") {
        "Il messaggio supera la dimensione massima consentita (256 KiB)."
    } else if has("unknown comune") {
        "Il comune indicato non è nel registro dei comuni."
    } else if has("is not configured in [publishers]") {
        "Il sistema che ha pubblicato non è tra quelli configurati."
    } else if has("may not publish") {
        "Il sistema che ha pubblicato non è autorizzato a questo tipo di evento o a questo \
         comune."
    } else if has("preferences") {
        "Le preferenze di recapito indicate per il referente non sono valide."
    } else if has("deputy_of") {
        "Il sostituto indicato per il referente non è valido."
    } else if has("scope") {
        "L'ambito di competenza indicato per il referente non è valido."
    } else if has("panicked") {
        "Errore interno dell'hub, da segnalare a chi lo mantiene: il messaggio è conservato."
    } else if has("did not finish within") {
        "L'elaborazione ha superato il tempo massimo, più volte."
    } else if has("owner") || has("belongs to") || has("another publisher") {
        "L'identificativo appartiene a un altro comune o a un altro sistema: solo un operatore \
         può spostarlo."
    } else if has(" 5.") || has("550") || has("553") || has("554") {
        "Il server di posta ha rifiutato il destinatario in modo definitivo."
    } else if has("timed out") || has("timeout") || has("connection") || has(" 4.") {
        "Il server di posta non ha accettato il messaggio dopo tutti i tentativi."
    } else if has("database") {
        "Il database non ha risposto, nemmeno dopo tutti i tentativi."
    } else {
        return None;
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reasons_the_hub_writes_have_an_italian_explanation() {
        for reason in [
            "not JSON: expected value at line 1 column 1",
            "envelope violation: missing specversion",
            "unknown event type \"housing.units.v9\"",
            "schema violation in housing.unit.v1: at /places: does not fit the type",
            "no worker is bound to routing key \"x\" (event type y)",
            "message of 300000 bytes is over the 262144-byte limit",
            "unknown comune 015999: it is not in the registry (raccordo import comuni)",
            "publisher \"comune_rho\" may not publish registry.referent.v1",
            "at /name: holds a control character (CR, LF, NUL or another C0/C1 character)",
            "preferences: housing.offered is required by the protocols and cannot be turned off",
            "the handler panicked (a defect of the hub, please report it): boom",
            "permanent SMTP error: 550 5.1.1 mailbox unavailable",
        ] {
            assert!(reason_it(reason).is_some(), "{reason}");
        }
        assert_eq!(reason_it("something new"), None);
    }
}
