#!/usr/bin/env bash
# Writes the seed inputs of every fuzz target into fuzz/seeds/<target>/ (not committed): the
# schema examples wrapped in an envelope of their type, each event of data/demo/*.ndjson,
# the hostile dates of issue 7, and data/*.csv. `scripts/fuzz.sh` minimizes them with the
# committed corpus (`cargo fuzz cmin`) when asked to reseed.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")"
command -v jq >/dev/null || { echo 'seed.sh needs jq' >&2; exit 1; }

rm -rf seeds
declare -A TARGET=(
  [eviction.step.v1]=eviction_step
  [eviction.consent.v1]=eviction_consent
  [housing.unit.v1]=housing_unit
  [reception.occupancy.v1]=reception_occupancy
  [registry.referent.v1]=registry_referent
)
for t in envelope_decode "${TARGET[@]}" csv_comuni csv_referents csv_events; do mkdir -p "seeds/$t"; done

# One event per file, for its type's target and for envelope_decode.
put() { # type name json
  local target=${TARGET[$1]:-}
  [[ -n $target ]] && printf '%s' "$3" >"seeds/$target/$2.json"
  printf '%s' "$3" >"seeds/envelope_decode/$2.json"
}

for dir in ../schemas/examples/*/; do
  type=$(basename "$dir")
  [[ -n ${TARGET[$type]:-} ]] || continue
  for file in "$dir"*.json; do
    name="$type-$(basename "$file" .json)"
    put "$type" "$name" "$(jq -c --arg t "$type" --arg id "$name" \
      '{specversion: "1.0", id: $id, source: "urn:fuzz:seed", type: $t, data: .}' "$file")"
  done
done

for file in ../data/demo/*.ndjson; do
  n=0
  while IFS= read -r line; do
    [[ -n $line ]] || continue
    n=$((n + 1))
    put "$(jq -r .type <<<"$line")" "demo-$(basename "$file" .ndjson)-$n" "$line"
  done <"$file"
done

# Issue 7, point 1: valid RFC 3339, outside the contract's years.
step='{"specversion":"1.0","id":"h1","source":"urn:fuzz:seed","type":"eviction.step.v1","data":{"procedure_id":"RG-1/2026","step":"accesso","occurred_on":"2026-03-01","comune_istat":"015146","next_access_at":"9999-12-31T23:59:59-01:00"}}'
put eviction.step.v1 hostile-next-access-9999 "$step"
no_access=${step/9999-12-31T23:59:59-01:00/2026-03-10T09:00:00+01:00}
put eviction.step.v1 hostile-occurred-on-0000 "${no_access/2026-03-01/0000-01-01}"
consent='{"specversion":"1.0","id":"h2","source":"urn:fuzz:seed","type":"eviction.consent.v1","data":{"procedure_id":"RG-1/2026","comune_istat":"015146","decision":"granted","recorded_by":"UNEP","recorded_at":"9999-12-31T23:59:59-01:00"}}'
put eviction.consent.v1 hostile-recorded-at-9999 "$consent"
put eviction.consent.v1 hostile-recorded-at-2062 "${consent/9999-12-31T23:59:59-01:00/2062-01-01T00:00:00Z}"

cp ../data/comuni_mi.csv seeds/csv_comuni/comuni_mi.csv
head -4 ../data/comuni_mi.csv >seeds/csv_comuni/comuni_mi-head.csv
printf 'istat,nome,popolazione,zona_omogenea,ambito,quota,protocollo\n015002,A,1,Z,,3,no\n015003,B,1,Z,,,si\n' \
  >seeds/csv_comuni/protocollo.csv
# Issue 17: control characters in names, institutions and scopes (refused at every edge).
printf '%s\n' '{"specversion":"1.0","id":"c1","source":"urn:fuzz:seed","type":"registry.referent.v1","data":{"referent_id":"ss-rho","action":"upsert","institution":"Comune di Rho\u0000","role":"servizi_sociali","email":"a@rho.example","name":"Ufficio\r\nBcc: x@evil.example","scope":{"ambito":"Rho\u0085"}}}' \
  >seeds/registry_referent/control-characters.json
printf 'referent_id,institution,role,email,name,comune_istat,ambito,zona\nr1,Comune di Rho,comune,a@rho.example,"Ufficio\r\nBcc: x@evil.example",015182,,\nr2,Comune\x07,comune,b@rho.example,Ufficio,015182,,\n' \
  >seeds/csv_referents/control-characters.csv
printf 'istat,nome,popolazione,zona_omogenea,ambito\n015998,Nuovo\x07 Comune,1000,Nord Ovest,Rho\n015999,"Altro\r\nComune",1000,Nord\tOvest,Rho\n' \
  >seeds/csv_comuni/control-characters.csv
cp ../data/referents_sample.csv seeds/csv_referents/referents_sample.csv
head -4 ../data/referents_sample.csv >seeds/csv_referents/referents-head.csv

# CSV uploads (contract 1.2 §10, target csv_events, which reads every input as both types):
# the demo events as `,` and `;` files, and hostile ones — BOM, CR LF, Italian booleans, a
# quoted newline, control characters, unknown, missing and repeated columns, extra cells,
# Windows-1252 bytes — with the canary QZXJ in bad cells (no row error may repeat it).
HOUSING_COLUMNS=(unit_id action comune_istat identified_by address places reception_kind building_type owner_declaration available_from notes)
OCCUPANCY_COLUMNS=(facility_id comune_istat reception_kind capacity presences as_of active)
csv_of() { # delimiter ndjson column...
  local d=$1 file=$2
  shift 2
  (IFS=$d; echo "$*")
  jq -r --arg d "$d" '[.data[$ARGS.positional[]]]
    | map(if . == null then "" else tostring end
      | if test("[;,\"\r\n]") then "\"" + gsub("\""; "\"\"") + "\"" else . end)
    | join($d)' "$file" --args "$@"
}
csv_of , ../data/demo/housing.ndjson "${HOUSING_COLUMNS[@]}" >seeds/csv_events/demo-housing.csv
csv_of ';' ../data/demo/housing.ndjson "${HOUSING_COLUMNS[@]}" >seeds/csv_events/demo-housing-semicolon.csv
csv_of , ../data/demo/occupancy.ndjson "${OCCUPANCY_COLUMNS[@]}" >seeds/csv_events/demo-occupancy.csv
csv_of ';' ../data/demo/occupancy.ndjson "${OCCUPANCY_COLUMNS[@]}" >seeds/csv_events/demo-occupancy-semicolon.csv
printf '\xef\xbb\xbfID;Unit_ID;action;comune_istat;address;places;reception_kind;building_type;owner_declaration\r\nh-1;u1;offered;015146;"Via Roma 1; int. 2";4;CAS;casa;S\xc3\xac\r\n;u2;withdrawn;015146;;;;;\r\n\r\n;;;;;;;;\r\n' \
  >seeds/csv_events/housing-bom-semicolon-crlf.csv
printf 'id,unit_id,action,comune_istat,address,places,reception_kind,building_type,owner_declaration,notes\nQZXJ\x07,u1,withdrawn,015146,,,,,,\n,u2,QZXJ,015146,,,,,,\n,u3,offered,QZXJ01,Via QZXJ,4,CAS,casa,true,\n,u4,offered,015146,Via QZXJ,QZXJ.5,CAS,casa,true,\n,u5,offered,015146,Via QZXJ,4,CAS,casa,QZXJ,\n,u6,withdrawn,015146,,,,,,"QZXJ\n2"\n,u7,withdrawn,015146,,,,,,QZXJ\t1\n,u8,withdrawn,015146,,,,,,,QZXJ\ne1,u9,withdrawn,015146,,,,,,\ne1,u10,withdrawn,015146,,,,,,\n' \
  >seeds/csv_events/housing-bad-rows.csv
printf 'facility_id;comune_istat;reception_kind;capacity;presences;as_of;active;\nf1;015146;CAS;30;31;2026-03-01;;\nf2;015002;SPRAR;12,5;QZXJ;2026-03-01;forse;\nf3;015002;SPRAR;-1;0;2026-02-31;VERO;QZXJ\n"f4\r\n";015002;SPRAR;1;1;2026-03-01;1;\n' \
  >seeds/csv_events/occupancy-bad-rows.csv
printf 'facility_id,comune_istat,reception_kind,capacity,presences,as_of,colour\nf1,015146,CAS,1,1,2026-03-01,\n' \
  >seeds/csv_events/unknown-column.csv
printf 'facility_id,capacity,capacity\n' >seeds/csv_events/repeated-column.csv
printf 'unit_id,address\nu1,Via Roma 1\n' >seeds/csv_events/missing-column.csv
printf 'unit_id;action;comune_istat;notes\nu1;withdrawn;015146;citt\xe0\n' >seeds/csv_events/windows-1252.csv

for t in seeds/*/; do echo "$(basename "$t"): $(ls "$t" | wc -l) seeds" >&2; done
