//! The kinds of notification the hub sends (CONTRACT §5), and who receives each.

use std::fmt;

use crate::domain::Role;

/// A notification kind; also its routing key on `{prefix}.events` and `X-Raccordo-Kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum NotificationKind {
    EvictionAlert,
    EvictionConsentRevoked,
    EvictionStats,
    HousingOffered,
    HousingAck,
    HousingRejected,
    HousingConsultation,
    HousingWithdrawn,
    QuotaThreshold,
    QuotaMonthlyReport,
    QuotaSafeguard,
    ReceptionOverCapacity,
    /// Nobody acknowledged an urgent alert in time (CONTRACT D5).
    DeliveryUnacknowledged,
    /// A desk asks for immediate reception of a vulnerable person (CONTRACT A1).
    AsylumProntaAccoglienza,
    /// No first intervention within `asylum.first_intervention_hours` (A2).
    AsylumInterventionOverdue,
    /// The rotation assigned a domicile (A3).
    AsylumDomicileAssigned,
    /// The Monday list of waiting cases and free SPRAR places (A4).
    AsylumWeeklyPriorities,
    /// A SPRAR facility freed places while cases wait (A5).
    AsylumPlaceAvailable,
}

impl NotificationKind {
    /// Every kind.
    pub const ALL: [NotificationKind; 18] = [
        NotificationKind::EvictionAlert,
        NotificationKind::EvictionConsentRevoked,
        NotificationKind::EvictionStats,
        NotificationKind::HousingOffered,
        NotificationKind::HousingAck,
        NotificationKind::HousingRejected,
        NotificationKind::HousingConsultation,
        NotificationKind::HousingWithdrawn,
        NotificationKind::QuotaThreshold,
        NotificationKind::QuotaMonthlyReport,
        NotificationKind::QuotaSafeguard,
        NotificationKind::ReceptionOverCapacity,
        NotificationKind::DeliveryUnacknowledged,
        NotificationKind::AsylumProntaAccoglienza,
        NotificationKind::AsylumInterventionOverdue,
        NotificationKind::AsylumDomicileAssigned,
        NotificationKind::AsylumWeeklyPriorities,
        NotificationKind::AsylumPlaceAvailable,
    ];

    /// The kinds a person must act on: their emails carry an acknowledgement link
    /// (CONTRACT D4).
    pub fn needs_acknowledgement(self) -> bool {
        matches!(
            self,
            NotificationKind::EvictionAlert
                | NotificationKind::HousingOffered
                | NotificationKind::HousingConsultation
                | NotificationKind::AsylumProntaAccoglienza
        )
    }

    /// What the acknowledgement page calls it: the kind alone, nothing of the content.
    pub fn label_it(self) -> &'static str {
        match self {
            NotificationKind::EvictionAlert => "Avviso di sfratto ai servizi sociali",
            NotificationKind::EvictionConsentRevoked => "Revoca del consenso",
            NotificationKind::EvictionStats => "Statistiche mensili degli sfratti",
            NotificationKind::HousingOffered => "Nuova disponibilità di alloggio",
            NotificationKind::HousingAck => "Conferma di ricezione di un alloggio",
            NotificationKind::HousingRejected => "Alloggio non accolto",
            NotificationKind::HousingConsultation => "Consultazione su un alloggio",
            NotificationKind::HousingWithdrawn => "Alloggio ritirato",
            NotificationKind::QuotaThreshold => "Soglia di copertura",
            NotificationKind::QuotaMonthlyReport => "Verifica mensile",
            NotificationKind::QuotaSafeguard => "Clausola di salvaguardia",
            NotificationKind::ReceptionOverCapacity => "Struttura oltre la capienza",
            NotificationKind::DeliveryUnacknowledged => "Avviso urgente senza presa visione",
            NotificationKind::AsylumProntaAccoglienza => "Richiesta di pronta accoglienza",
            NotificationKind::AsylumInterventionOverdue => "Primo intervento non registrato",
            NotificationKind::AsylumDomicileAssigned => "Domicilio assegnato",
            NotificationKind::AsylumWeeklyPriorities => "Lista settimanale delle priorità",
            NotificationKind::AsylumPlaceAvailable => "Posti SPRAR disponibili",
        }
    }

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            NotificationKind::EvictionAlert => "eviction.alert",
            NotificationKind::EvictionConsentRevoked => "eviction.consent_revoked",
            NotificationKind::EvictionStats => "eviction.stats",
            NotificationKind::HousingOffered => "housing.offered",
            NotificationKind::HousingAck => "housing.ack",
            NotificationKind::HousingRejected => "housing.rejected",
            NotificationKind::HousingConsultation => "housing.consultation",
            NotificationKind::HousingWithdrawn => "housing.withdrawn",
            NotificationKind::QuotaThreshold => "quota.threshold",
            NotificationKind::QuotaMonthlyReport => "quota.monthly_report",
            NotificationKind::QuotaSafeguard => "quota.safeguard",
            NotificationKind::ReceptionOverCapacity => "reception.over_capacity",
            NotificationKind::DeliveryUnacknowledged => "delivery.unacknowledged",
            NotificationKind::AsylumProntaAccoglienza => "asylum.pronta_accoglienza",
            NotificationKind::AsylumInterventionOverdue => "asylum.intervention_overdue",
            NotificationKind::AsylumDomicileAssigned => "asylum.domicile_assigned",
            NotificationKind::AsylumWeeklyPriorities => "asylum.weekly_priorities",
            NotificationKind::AsylumPlaceAvailable => "asylum.place_available",
        }
    }

    /// Parses the wire name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// The roles that receive a notification about one comune, among referents covering
    /// it (CONTRACT §5). Eviction kinds narrow this further: see [`Reach`].
    pub fn roles(self) -> &'static [Role] {
        match self {
            NotificationKind::EvictionAlert | NotificationKind::EvictionConsentRevoked => {
                &[Role::ServiziSociali]
            }
            NotificationKind::EvictionStats => &[Role::ServiziSociali, Role::Prefettura],
            NotificationKind::HousingOffered
            | NotificationKind::HousingWithdrawn
            | NotificationKind::QuotaSafeguard => &[Role::StazioneAppaltante],
            NotificationKind::HousingAck
            | NotificationKind::HousingRejected
            | NotificationKind::HousingConsultation => &[Role::Comune],
            NotificationKind::QuotaThreshold => {
                &[Role::StazioneAppaltante, Role::Comune, Role::Tavolo]
            }
            NotificationKind::QuotaMonthlyReport => &[Role::Prefettura, Role::Tavolo],
            NotificationKind::ReceptionOverCapacity => &[Role::Prefettura],
            // The escalation names its recipients itself (deputies too): these are the
            // roles it adds by scope (CONTRACT D5).
            NotificationKind::DeliveryUnacknowledged => &[Role::ServiziSociali, Role::Prefettura],
            // The asylum workers add the desk itself by its referent id (CONTRACT A1–A5).
            NotificationKind::AsylumProntaAccoglienza => &[Role::ServiziSociali],
            NotificationKind::AsylumInterventionOverdue => {
                &[Role::Prefettura, Role::Tavolo, Role::ServiziSociali]
            }
            NotificationKind::AsylumDomicileAssigned => &[Role::Comune],
            NotificationKind::AsylumWeeklyPriorities | NotificationKind::AsylumPlaceAvailable => {
                &[Role::SportelloAsilo]
            }
        }
    }

    /// How far a referent's scope may reach for this kind.
    pub fn reach(self) -> Reach {
        match self {
            // Personal data: minimisation (CONTRACT §1, A1).
            NotificationKind::EvictionAlert
            | NotificationKind::EvictionConsentRevoked
            | NotificationKind::AsylumProntaAccoglienza => Reach::ComuneOrAmbito,
            _ => Reach::Covering,
        }
    }
}

impl fmt::Display for NotificationKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which referent scopes receive a notification about a comune.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    /// Every referent that covers the comune: unscoped, or scoped to it, its ambito or zona.
    Covering,
    /// Only referents scoped exactly to the comune or to its ambito.
    ComuneOrAmbito,
}
