//! Who is told of a pronta accoglienza (CONTRACT A1) and of its missed first intervention
//! (A2). The registry decides, in the transaction that writes the notification.

use raccordo_core::domain::{Role, Scope};
use raccordo_core::notification::NotificationKind;
use raccordo_core::registry::{Comune, Recipient, Referent, Snapshot};

/// A1: the `servizi_sociali` scoped to the comune or to its ambito (never an unscoped or
/// zona-wide office: the notice may carry `person`), and the desk that reported the case.
pub fn pronta(registry: &Snapshot, comune: &Comune, desk: &Referent) -> Vec<Recipient> {
    let mut out = registry.recipients_for(NotificationKind::AsylumProntaAccoglienza, comune);
    if !out.iter().any(|r| r.email == desk.email) {
        out.push(recipient(desk));
    }
    out
}

/// A2: the `prefettura` covering the comune, the unscoped `tavolo` (the Tavolo provinciale
/// asilo, not a zona's), and the same social services as A1.
pub fn overdue(registry: &Snapshot, comune: &Comune) -> Vec<Recipient> {
    registry
        .recipients_for(NotificationKind::AsylumInterventionOverdue, comune)
        .into_iter()
        .filter(|r| {
            registry
                .referent(&r.referent_id)
                .is_some_and(|referent| receives_overdue(referent.role, &referent.scope))
        })
        .collect()
}

/// Whether a referent covering the comune gets `asylum.intervention_overdue`.
pub fn receives_overdue(role: Role, scope: &Scope) -> bool {
    match role {
        Role::Prefettura => true,
        Role::Tavolo => matches!(scope, Scope::All),
        Role::ServiziSociali => matches!(scope, Scope::Comune(_) | Scope::Ambito(_)),
        _ => false,
    }
}

fn recipient(referent: &Referent) -> Recipient {
    Recipient {
        referent_id: referent.referent_id.clone(),
        email: referent.email.clone(),
        name: referent.name.clone(),
        institution: referent.institution.clone(),
        role: referent.role,
    }
}

#[cfg(test)]
mod tests {
    use raccordo_core::domain::ComuneIstat;

    use super::*;

    #[test]
    fn the_overdue_notice_reaches_the_prefettura_the_provincial_tavolo_and_local_social_services() {
        let rho = Scope::Comune(ComuneIstat::parse("015182").expect("valid"));
        assert!(receives_overdue(Role::Prefettura, &Scope::All));
        assert!(receives_overdue(Role::Tavolo, &Scope::All));
        assert!(!receives_overdue(
            Role::Tavolo,
            &Scope::Zona("Nord Ovest".into())
        ));
        assert!(receives_overdue(Role::ServiziSociali, &rho));
        assert!(receives_overdue(
            Role::ServiziSociali,
            &Scope::Ambito("Rho".into())
        ));
        assert!(!receives_overdue(Role::ServiziSociali, &Scope::All));
        assert!(!receives_overdue(
            Role::ServiziSociali,
            &Scope::Zona("Nord Ovest".into())
        ));
        assert!(!receives_overdue(Role::SportelloAsilo, &Scope::All));
        assert!(!receives_overdue(Role::Comune, &rho));
    }
}
