package messages

import "strings"

// isoCurrencies holds the ISO 4217 alphabetic codes a currency column
// accepts. Source: ISO 4217 "List One: Currency, fund and precious metal
// codes" as published by the maintenance agency, SIX Group
// (https://www.six-group.com/en/products-services/financial-information/data-standards.html,
// list-one.xml, amendment 179 of 2025) [INFER: written from that list as
// known at the time of writing; the list changes a few times a year, and
// this table is the one place to update]. Codes withdrawn since 2018 are
// accepted too (HRK, SLL, ZWL, ANG, CUC, MRO, STD, VEF: List Three),
// because billing data is historical: an invoice of 2022 in Croatian kuna
// is still an invoice in HRK.
// Each maps to itself, held in the constants below: internCurrency hands
// out these strings instead of the caller's.
var isoCurrencies = func() map[string]string {
	const active = "AED AFN ALL AMD AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BOV BRL BSD BTN BWP BYN BZD " +
		"CAD CDF CHE CHF CHW CLF CLP CNY COP COU CRC CUP CVE CZK DJF DKK DOP DZD EGP ERN ETB EUR FJD FKP " +
		"GBP GEL GHS GIP GMD GNF GTQ GYD HKD HNL HTG HUF IDR ILS INR IQD IRR ISK JMD JOD JPY KES KGS KHR " +
		"KMF KPW KRW KWD KYD KZT LAK LBP LKR LRD LSL LYD MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN " +
		"MXV MYR MZN NAD NGN NIO NOK NPR NZD OMR PAB PEN PGK PHP PKR PLN PYG QAR RON RSD RUB RWF SAR SBD " +
		"SCR SDG SEK SGD SHP SLE SOS SRD SSP STN SVC SYP SZL THB TJS TMT TND TOP TRY TTD TWD TZS UAH UGX " +
		"USD USN UYI UYU UYW UZS VED VES VND VUV WST XAF XAG XAU XBA XBB XBC XBD XCD XCG XDR XOF XPD XPF " +
		"XPT XSU XTS XUA XXX YER ZAR ZMW ZWG"
	const withdrawnSince2018 = "ANG CUC HRK MRO SLL STD VEF ZWL"
	m := map[string]string{}
	for _, list := range []string{active, withdrawnSince2018} {
		for i := 0; i+3 <= len(list); i += 4 {
			m[list[i:i+3]] = list[i : i+3]
		}
	}
	return m
}()

// IsCurrency reports whether s is an ISO 4217 alphabetic currency code
// (current, or withdrawn since 2018).
func IsCurrency(s string) bool {
	_, ok := isoCurrencies[s]
	return len(s) == 3 && ok
}

// internCurrency is cur in memory of its own: a decoded record's strings
// point into its whole payload, and a sum that kept one as a map key kept
// the payload (a drain's per-part sums held every part it read: 589 MB
// for 2M records). An ISO code costs nothing; anything else is copied.
func internCurrency(cur string) string {
	if c, ok := isoCurrencies[cur]; ok {
		return c
	}
	return strings.Clone(cur)
}
