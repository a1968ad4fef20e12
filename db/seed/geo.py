"""Countries the shop sells to: Faker locale, share of customers, regions and cities, mail hosts."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Country:
    name: str
    locale: str
    share: float
    tld: str
    # (region, city, relative size)
    cities: tuple[tuple[str, str, float], ...]
    mail_hosts: tuple[str, ...]


COUNTRIES: tuple[Country, ...] = (
    Country(
        "Germany",
        "de_DE",
        0.21,
        "de",
        (
            ("Berlin", "Berlin", 10),
            ("Hamburg", "Hamburg", 5),
            ("Bavaria", "Munich", 5),
            ("Bavaria", "Nuremberg", 2),
            ("Bavaria", "Augsburg", 1),
            ("North Rhine-Westphalia", "Cologne", 4),
            ("North Rhine-Westphalia", "Düsseldorf", 2.5),
            ("North Rhine-Westphalia", "Dortmund", 2.5),
            ("Hesse", "Frankfurt am Main", 3),
            ("Hesse", "Wiesbaden", 1),
            ("Baden-Württemberg", "Stuttgart", 2.5),
            ("Baden-Württemberg", "Karlsruhe", 1.2),
            ("Saxony", "Leipzig", 2),
            ("Saxony", "Dresden", 2),
        ),
        ("gmail.com", "web.de", "gmx.de", "t-online.de", "outlook.de"),
    ),
    Country(
        "France",
        "fr_FR",
        0.14,
        "fr",
        (
            ("Île-de-France", "Paris", 12),
            ("Île-de-France", "Versailles", 1),
            ("Auvergne-Rhône-Alpes", "Lyon", 4),
            ("Auvergne-Rhône-Alpes", "Grenoble", 1.3),
            ("Provence-Alpes-Côte d'Azur", "Marseille", 4),
            ("Provence-Alpes-Côte d'Azur", "Nice", 2),
            ("Occitanie", "Toulouse", 3),
            ("Occitanie", "Montpellier", 2),
            ("Nouvelle-Aquitaine", "Bordeaux", 2.5),
            ("Hauts-de-France", "Lille", 2.3),
            ("Pays de la Loire", "Nantes", 2.2),
        ),
        ("gmail.com", "orange.fr", "free.fr", "laposte.net", "hotmail.fr"),
    ),
    Country(
        "United Kingdom",
        "en_GB",
        0.14,
        "co.uk",
        (
            ("England", "London", 14),
            ("England", "Manchester", 3),
            ("England", "Birmingham", 3),
            ("England", "Leeds", 2),
            ("England", "Bristol", 1.5),
            ("England", "Liverpool", 1.5),
            ("Scotland", "Glasgow", 2),
            ("Scotland", "Edinburgh", 1.8),
            ("Wales", "Cardiff", 1.2),
            ("Northern Ireland", "Belfast", 1),
        ),
        ("gmail.com", "outlook.com", "yahoo.co.uk", "btinternet.com", "hotmail.co.uk"),
    ),
    Country(
        "Spain",
        "es_ES",
        0.09,
        "es",
        (
            ("Madrid", "Madrid", 8),
            ("Catalonia", "Barcelona", 7),
            ("Andalusia", "Seville", 2.5),
            ("Andalusia", "Málaga", 2),
            ("Valencian Community", "Valencia", 3),
            ("Basque Country", "Bilbao", 1.5),
            ("Aragon", "Zaragoza", 1.5),
        ),
        ("gmail.com", "hotmail.es", "yahoo.es", "telefonica.net"),
    ),
    Country(
        "Italy",
        "it_IT",
        0.09,
        "it",
        (
            ("Lombardy", "Milan", 7),
            ("Lombardy", "Bergamo", 1.2),
            ("Lazio", "Rome", 7),
            ("Campania", "Naples", 4),
            ("Piedmont", "Turin", 3.5),
            ("Tuscany", "Florence", 2),
            ("Emilia-Romagna", "Bologna", 2),
            ("Veneto", "Venice", 1.2),
        ),
        ("gmail.com", "libero.it", "virgilio.it", "alice.it", "tiscali.it"),
    ),
    Country(
        "Netherlands",
        "nl_NL",
        0.07,
        "nl",
        (
            ("North Holland", "Amsterdam", 8),
            ("North Holland", "Haarlem", 1.5),
            ("South Holland", "Rotterdam", 6),
            ("South Holland", "The Hague", 5),
            ("Utrecht", "Utrecht", 3.5),
            ("North Brabant", "Eindhoven", 2.3),
            ("Groningen", "Groningen", 2),
        ),
        ("gmail.com", "ziggo.nl", "kpnmail.nl", "hotmail.nl"),
    ),
    Country(
        "Poland",
        "pl_PL",
        0.07,
        "pl",
        (
            ("Masovian", "Warsaw", 9),
            ("Lesser Poland", "Kraków", 4),
            ("Lower Silesian", "Wrocław", 3),
            ("Łódź", "Łódź", 3),
            ("Pomeranian", "Gdańsk", 2.5),
            ("Greater Poland", "Poznań", 2.7),
        ),
        ("gmail.com", "wp.pl", "onet.pl", "interia.pl", "o2.pl"),
    ),
    Country(
        "United States",
        "en_US",
        0.19,
        "com",
        (
            ("California", "Los Angeles", 8),
            ("California", "San Francisco", 3),
            ("California", "San Diego", 3),
            ("New York", "New York", 12),
            ("New York", "Buffalo", 1),
            ("Texas", "Houston", 5),
            ("Texas", "Austin", 2.5),
            ("Texas", "Dallas", 3.5),
            ("Illinois", "Chicago", 6),
            ("Florida", "Miami", 2.5),
            ("Florida", "Orlando", 1.5),
            ("Washington", "Seattle", 2.5),
            ("Massachusetts", "Boston", 2.5),
            ("Georgia", "Atlanta", 2.5),
        ),
        ("gmail.com", "yahoo.com", "outlook.com", "icloud.com", "aol.com"),
    ),
)
